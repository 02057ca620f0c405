"""The production design, one mechanism per module.

=================  ============================================  ==========
module             mechanism                                      lesson
=================  ============================================  ==========
``backoff``        reconnection delays with jitter                 03
``reliable``       outbound window, acknowledgements, sequence     04, 10
``channel``        reader, worker and writer tasks                 07
``envelope``       the frames, and the answer to bad input         04, 05
``settings``       every value chosen, with the reason             03–08
``client``         reconnecting client, durable outbound queue     03–08
``sessions``       the session store: owners, bounds, eviction     09
``server``         handler with a durable session store            04–09
=================  ============================================  ==========
"""
