"""Review a prompt before it goes to the assistant: the course's method as a checklist.

:func:`review_prompt` reads a prompt written for one lesson and answers with a
checklist, each unchecked line with a hint:

- **the lesson's requirements**: every mechanism the lesson is about is named
  (lesson 04: sequence numbers, acknowledgements, a queue kept until the
  acknowledgement, resending after a reconnection);
- **assumptions with numbers**: at least two quantities with a unit (clients,
  messages per second, seconds of outage, milliseconds of latency), since an
  assistant derives its timeouts and sizes from them or invents them;
- **failures or lifecycle first**: the prompt asks for the failure scenarios or
  the connection's lifecycle before any code;
- **explain the decisions**: every mechanism and value with its reason;
- **a self-audit**: after the code, the assistant reviews it for the lesson's
  risks.

The review reads words, not intent: it is a checklist for a person, not a
grade of the code the prompt gets (the lab measures that). Its patterns are
deliberately broad (synonyms, either spelling), so a prompt in anyone's words
passes when it asks for the thing.

A passing review can be kept: :meth:`PromptReview.check` writes the prompt to
``my_prompts/<lesson>.md`` (beside the notebook, or in ``$WSLAB_PROMPTS_DIR``),
and :func:`assemble_template` joins the kept sections into the learner's own
production template (lesson 13).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownNameError


@dataclass(frozen=True)
class Requirement:
    """One thing a lesson's prompt must name: every pattern must match somewhere."""

    label: str
    patterns: tuple[str, ...]
    hint: str

    def met_by(self, text: str) -> bool:
        return all(re.search(p, text, re.IGNORECASE | re.MULTILINE) for p in self.patterns)


def _req(label: str, *patterns: str, hint: str) -> Requirement:
    return Requirement(label, patterns, hint)


# Building blocks, shared by several lessons.
RECONNECT = r"reconnect|re-connect|connect again|reconnection"
BACKOFF = r"back-?off|exponential"
ACK = r"acknowledg|\backs?\b"
SEQ = r"sequence|\bseq\b|message ids?\b|\bids?\b|numbered|number (each|every)"
KEEP_UNTIL_ACK = (r"(keep|kept|stay|stays|remain|hold|held|store|until)\w*[^.;]{0,80}"
                  r"(acknowledg|\backed\b|\backs?\b)")
RESEND = r"resen[dt]|re-sen[dt]|retransmit|replay|send (them |it )?again|sent again"
BOUNDED = (r"bounded|maxsize|max_size|max_queue|write_limit|at most \d|\blimit|capacity"
           r"|\bcap\b|no more than \d")
WHEN_FULL = (r"when (it is |the queue is |they are |a queue is )?full|overflow|back-?pressure"
             r"|shed|refuse|reject|producer (waits|blocks|slows)|block the producer|drop the")
SLOW = (r"slow(ly)? (client|consumer|reader|receiver|peer)|reads? slowly|falls? behind|slower"
        r"|slow to (read|process)|faster than|keep up|burst|than (the )?\w+ can (save|process|handle|read)")
PING = r"\bping|heartbeat|keep-?alive"
SHUTDOWN = r"shut ?down|sigterm|graceful|stop(ped|ping)?\b"
LOGS = r"structured log|json|log (line|record|event)s?|\blogg(ing|er)"
METRICS = r"metric|counter|gauge|prometheus|histogram"
DEDUP = (r"de-?dup|duplicate|exactly[- ]once|idempot|(processe?d?|handled?) (only )?once"
         r"|already (processed|seen)|twice")

LESSON_REQUIREMENTS: dict[str, tuple[Requirement, ...]] = {
    "01_happy_path": (
        _req("the platform: Python version and the websockets library",
             r"python\s*3\.\d+", r"websockets",
             hint="Give the context: the Python version (3.11) and the library and its version "
                  "(`websockets` 17, its `websockets.asyncio` API), so the code fits what you run."),
        _req("what delivered means (no message lost)",
             r"(no|never|without|not) (a )?(single )?(message|event|update)?s? ?(is |are |gets? )?"
             r"(lost|loss|los[et]|dropped)|at[- ]least[- ]once|exactly[- ]once"
             r"|every (message|event) (is |must be )?(delivered|processed)|acknowledg",
             hint="Say what the code must guarantee: no message lost, and what counts as "
                  "delivered (processed by the server, not just written to a socket)."),
        _req("the failure the happy path hides: a disconnect mid-stream",
             r"disconnect|connections? (drops?|dies|die|is lost|are lost|break)|drop(s|ped)? "
             r"(in the middle|mid-stream)|network (interruption|cut|failure|drop)|restart",
             hint="Name the failure a tutorial handler ignores: a connection that drops in the "
                  "middle of a stream (or a server that restarts) with messages in flight."),
    ),
    "02_failure_modes": (
        _req("reconnection", RECONNECT,
             hint="Ask for automatic reconnection: the tutorial client never comes back."),
        _req("no loss across a disconnect (acknowledgements)", ACK,
             hint="Ask that a message stays queued until the server acknowledges it, and is "
                  "resent after a reconnection: a dropped connection loses what was in flight."),
        _req("a slow client (bounded queues, backpressure)", BOUNDED + "|" + WHEN_FULL,
             hint="Name the slow client: ask for bounded queues and a stated policy when one is "
                  "full, or a buffer grows without bound."),
        _req("idle connections (keepalive)", PING + r"|\bidle",
             hint="Name idle connections silently dropped by NATs and load balancers: ask for "
                  "ping/pong keepalive with its interval and timeout."),
    ),
    "03_reconnection": (
        _req("exponential backoff", BACKOFF,
             hint="Ask for exponential backoff: a fixed or zero delay makes a tight reconnect loop."),
        _req("a maximum delay", r"max(imum)?[ _-]?delay|\bcap(ped)?\b|ceiling|upper (bound|limit)"
             r"|at most \d+ ?(s|seconds?|minutes?)\b|no (longer|more) than \d",
             hint="Give the backoff a maximum delay (a cap), with a number: without one an outage "
                  "of an hour leaves clients waiting hours."),
        _req("jitter", r"jitter|random",
             hint="Ask for jitter (full jitter: a random wait between 0 and the backoff): without "
                  "it every client that lost the server retries at the same instant, a storm."),
        _req("which failures are not retried",
             r"401|403|4\d\d\d|final|fatal|permanent|(do not|don't|never|not) (be )?retr"
             r"|give up|stop retrying|non-?retr",
             hint="Say which failures must not be retried (401, 403, a close code 4xxx: a refused "
                  "credential), or the client hammers a server that said no."),
    ),
    "04_durability": (
        _req("sequence numbers", SEQ,
             hint="Ask that every message gets a sequence number (or id): the acknowledgement "
                  "and the resend refer to it."),
        _req("acknowledgements", ACK,
             hint="Ask the server to acknowledge each message after processing it: `send()` "
                  "returning only means the bytes reached a local buffer."),
        _req("kept until acknowledged", KEEP_UNTIL_ACK,
             hint="Say that a message stays in the outbound queue until its acknowledgement "
                  "arrives, not until `send()` returns."),
        _req("resent after a reconnection", RESEND,
             hint="Ask that every unacknowledged message is resent after a reconnection, oldest first."),
    ),
    "05_backpressure": (
        _req("bounded queues", BOUNDED,
             hint="Ask for bounded queues with a size (`asyncio.Queue(maxsize=...)`, "
                  "`max_queue`, `write_limit`): an unbounded buffer grows until memory runs out."),
        _req("a policy when full", WHEN_FULL + r"|(wait|block)s? (until|when)",
             hint="Say what happens when a queue is full: the producer waits (backpressure), or "
                  "the message is refused explicitly; never a silent drop."),
        _req("the slow consumer", SLOW,
             hint="Name the cause: a slow client or consumer that reads more slowly than the "
                  "producer writes."),
    ),
    "06_keepalive": (
        _req("ping/pong keepalive", PING,
             hint="Ask for ping/pong keepalive (`ping_interval`, `ping_timeout`), on both sides."),
        _req("the interval and the timeout", r"interval", r"timeout",
             hint="Ask for both values, the ping interval and the pong timeout, chosen from your "
                  "numbers and explained."),
        _req("how fast a dead connection must be noticed",
             r"(notice|detect|hear|know|discover)\w*[^.;]{0,60}(dead|lost|silent|half-open|broken|gone)"
             r"|within \d+ ?(ms|s|seconds?)\b",
             hint="Give the detection bound: a dead connection (no FIN, no RST) must be noticed "
                  "within so many seconds."),
        _req("false alarms during a latency spike",
             r"false|spike|latency|slow (pong|network)|\brtt\b|round[- ]trips?|congest"
             r"|(not|never) (count|be (taken|treated|considered|mistaken))",
             hint="Name the opposite risk: a latency spike must not be taken for a dead "
                  "connection (false alarm)."),
    ),
    "07_reading_and_writing": (
        _req("separate reader and writer tasks",
             r"separate|(reader|receiver|receive|read)[^.;]{0,40}(writer|sender|send|write)",
             hint="Ask for separate reader and writer tasks (and a worker), so neither waits for "
                  "the other."),
        _req("queues between the tasks", r"queue",
             hint="Say how the tasks hand work over: bounded queues between reader, worker and writer."),
        _req("slow processing never blocks reading",
             r"(never|not|without|doesn't|does not|no) (be )?(block|stop|stall|delay|hold up)"
             r"|keeps? reading|answer(ing|s)? pings|blocked",
             hint="State the point: slow processing must never stop the reading of the socket or "
                  "the answering of pings."),
    ),
    "08_shutdown": (
        _req("shutdown", SHUTDOWN,
             hint="Ask for graceful shutdown: on SIGTERM or stop(), what the server and the client do."),
        _req("messages in flight at the stop",
             r"in[- ]flight|outstanding|unacknowledged|drain|pending|not (yet )?(processed|acknowledged)"
             r"|still (queued|holds?)|holds?",
             hint="Ask what happens to the messages in flight at the stop (queued, on the wire, "
                  "read and not processed): finish, hand back or report them, never drop them."),
        _req("cancellation", r"cancel",
             hint="Ask for correct cancellation: every task cancelled and awaited, a "
                  "`CancelledError` never swallowed."),
        _req("a bound on the wait", r"bounded|deadline|time ?out|within \d|close_timeout|at most \d",
             hint="Give the stop a deadline: wait a bounded time for acknowledgements, then close "
                  "(1000/1001) and report what is left."),
    ),
    "08b_cancellation": (
        _req("cancellation let through", r"cancel",
             r"re-?rais|propagat|never (be )?swallow|not swallow|let [^.;]{0,30}through|baseexception|bare except",
             hint="Say that a cancellation must never be swallowed: catch Exception, not everything, "
                  "and re-raise CancelledError after any cleanup."),
        _req("errors skipped, the worker goes on", r"skip|log(ged|s)? (it|the error|and)|go(es)? on|continu|keep (running|going)",
             hint="Say what a message that fails to process does: logged and skipped, and the worker "
                  "goes on (catching Exception around one message)."),
        _req("every task owned", r"taskgroup|task group|owned|structured|cancel(led)? and awaited|outlive",
             hint="Ask that every task belongs to a TaskGroup (or is kept, cancelled and awaited), so "
                  "none outlives its connection."),
        _req("a bound on the stop", r"deadline|bounded|time ?out|within \d|at most \d",
             hint="Give the stop a deadline: every task ends within a stated time of a shutdown."),
    ),
    "09_expiring_auth": (
        _req("tokens that expire", r"expir|lifetime|\blive|\bttl\b|valid for",
             hint="Say that access tokens expire, with their lifetime."),
        _req("refresh without losing messages", r"refresh|renew|re-?authenticat",
             hint="Ask for a token refresh that loses no queued or in-flight message (in-band, or "
                  "by reconnecting and resending)."),
        _req("a revoked session is not retried",
             r"revok|4403|403|permission|forbidden|refused",
             hint="Say what a revoked session or refused credential does: close with a clear code "
                  "(4403) and the client stops retrying."),
    ),
    "10_ordering": (
        _req("sequence numbers", SEQ,
             hint="Ask that every message carries a sequence number per sender."),
        _req("de-duplication", DEDUP,
             hint="Ask the receiver to drop copies by sequence number: a resend after a lost "
                  "acknowledgement delivers a message twice."),
        _req("order", r"\border",
             hint="Say that messages must be processed in order per sender, across reconnects "
                  "and retries."),
        _req("surviving a restart", r"persist|durable|database|disk|\bstore|surviv|restart",
             hint="Say where the receiver keeps what it has processed, so that de-duplication "
                  "survives its own restart."),
    ),
    "11_observability": (
        _req("structured logs", LOGS,
             hint="Ask for structured logging (the `logging` module, fields, JSON lines), not print()."),
        _req("context on every line", r"connection id|client id|session id|\bfields?\b|extra=|context|correlat",
             hint="Ask that every log line names its client and connection (fields), or interleaved "
                  "lines cannot be attributed."),
        _req("metrics", METRICS,
             hint="Ask for metrics: counters (connections, reconnects, resends, duplicates) and "
                  "gauges (queue depth, open connections)."),
    ),
    "12_capstone": (
        _req("tests that try to break the code", r"\btests?\b|test plan|attack",
             hint="Ask for tests that break the code (the reliability engineer's job), not for "
                  "an opinion on whether it is ready."),
        _req("a network interruption", r"interrupt|cut|drop|partition|network fail",
             hint="Include a network interruption (a cut, a partition) among the attacks."),
        _req("a slow client and queue overflow", SLOW + "|overflow|full|overload",
             hint="Include a slow client and a queue that fills up."),
        _req("duplicates and lost acknowledgements", DEDUP + r"|lost ack",
             hint="Include duplicated messages and lost acknowledgements."),
        _req("a server restart", r"restart|redeploy|deploy",
             hint="Include a server restart (a deploy) with messages in flight."),
        _req("measurable pass criteria", r"criteri|measur|pass(es)? (if|when)|assert|count",
             hint="Ask for pass criteria you can measure (messages lost, duplicated, peak queue), "
                  "not a verdict."),
    ),
    "13_prompt_lab": (
        _req("reconnection with backoff", RECONNECT, BACKOFF,
             hint="Ask for reconnection with exponential backoff, a cap and jitter."),
        _req("an acknowledged outbound queue", ACK, RESEND,
             hint="Ask for an outbound queue kept until acknowledgement, resent after reconnecting."),
        _req("bounded queues", BOUNDED,
             hint="Ask for bounded queues and a policy when full (backpressure)."),
        _req("keepalive", PING,
             hint="Ask for ping/pong keepalive with its values explained."),
        _req("separate tasks", r"separate|(reader|receiver)[^.;]{0,40}(writer|sender)",
             hint="Ask for separate reader, worker and writer tasks."),
        _req("graceful shutdown", SHUTDOWN, r"cancel",
             hint="Ask for graceful shutdown with correct cancellation."),
        _req("logs and metrics", LOGS, METRICS,
             hint="Ask for structured logging and connection metrics."),
    ),
    "14_nodejs": (
        _req("Node.js and ws, with versions", r"node(\.js)? ?\d+", r"\bws\b ?\d+|\bws\b (library|8)",
             hint="Name the runtime and the library with their versions (Node.js 22, ws 8): the "
                  "idioms differ between libraries and versions."),
        _req("a heartbeat that terminates dead peers", PING, r"terminat|isalive|dead",
             hint="Ask for a server heartbeat: ping every interval, terminate() a connection that "
                  "missed the previous pong, the interval derived from your numbers (ws pings "
                  "nothing by itself)."),
        _req("backpressure from bufferedAmount", r"bufferedamount|backpressure|buffered",
             hint="Ask for backpressure: check ws.bufferedAmount before sending, with a limit per "
                  "connection (ws.send never refuses; it buffers without bound)."),
        _req("reconnection with backoff", RECONNECT, BACKOFF,
             hint="Ask the client to reconnect with exponential backoff and jitter: ws has no "
                  "reconnection of its own."),
        _req("acknowledgements and de-duplication", ACK, DEDUP,
             hint="Ask for acknowledged messages, resent after a reconnect and de-duplicated by "
                  "the receiver (queue durability)."),
        _req("a graceful restart", SHUTDOWN + r"|restart|deploy",
             hint="Say what a restart does: on SIGTERM stop accepting, close with 1001, wait a "
                  "bounded time, exit."),
    ),
}

_NUMBER = (r"(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|fifty"
           r"|sixty|hundreds?|thousands?)")
_UNIT = (r"(?:ms|milliseconds?|s|secs?|seconds?|min|minutes?|hours?|%|kib|mib|kb|mb|gb|bytes?"
         r"|messages?|events?|updates?|clients?|connections?|devices?|users?|handshakes?"
         r"|requests?|per second|/\s?s|a second)")
QUANTITY = re.compile(rf"\b{_NUMBER}\s*{_UNIT}\b|\b{_NUMBER}\s+\w+\s+(?:per|a|each|every) "
                      r"(?:second|minute|hour)\b|\b(?:a|an) (?:second|minute|hour)\b", re.IGNORECASE)
FAILURE_WORDS = re.compile(
    r"fail|lifecycle|life cycle|what happens (to|when|if)|(go|goes|be) wrong|break|risks?\b"
    r"|edge cases?|scenarios?",
    re.IGNORECASE)
FIRST_WORDS = re.compile(
    r"before\b[^.;:]{0,30}\b(code|implementation|implementing|writing)|\bfirst\b|start by"
    r"|^\s*1[.)]\s*(list|describe|explain)",
    re.IGNORECASE | re.MULTILINE)
EXPLAIN_WORDS = re.compile(
    r"explain|justify|(say|tell me|and) why|\breasons?\b|rationale|arithmetic|why (you|each|it)",
    re.IGNORECASE)
AUDIT_WORDS = re.compile(
    r"audit|review (your|its|the) (own )?(code|answer|implementation)|critique|self-?review"
    r"|check (your|that|the) (own )?(code|answer|output)"
    r"|afterwards,? (check|review|verify|test|say|tell me|list)"
    r"|what still fails|go (back )?(through|over) (your|the) code",
    re.IGNORECASE)


@dataclass(frozen=True)
class CheckItem:
    """One line of the checklist: what is checked, whether it holds, what to do if not."""

    label: str
    passed: bool
    hint: str


@dataclass(frozen=True)
class PromptReview:
    """The checklist of one prompt for one lesson. True when every line holds."""

    lesson: str
    prompt: str
    items: tuple[CheckItem, ...]

    @property
    def passed(self) -> bool:
        return all(item.passed for item in self.items)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def hints(self) -> list[str]:
        """What to add, most important first (the lesson's requirements come first)."""
        return [item.hint for item in self.items if not item.passed]

    def __str__(self) -> str:
        lines = [f"Prompt review for {self.lesson}:"]
        for item in self.items:
            lines.append(f"  {'✅' if item.passed else '❌'} {item.label}")
            if not item.passed:
                lines.append(f"      hint: {item.hint}")
        lines.append("  All there: the prompt asks for what the lesson measured." if self.passed
                     else f"  {len(self.hints)} to go.")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        rows = [f"**Prompt review for {self.lesson}**", ""]
        for item in self.items:
            rows.append(f"- {'✅' if item.passed else '❌'} {item.label}"
                        + ("" if item.passed else f"  \n  *hint:* {item.hint}"))
        return "\n".join(rows)

    def check(self) -> Path:
        """Print the checklist; if every line holds, keep the prompt as this lesson's
        section of the learner's template and return its path, else raise
        :class:`PromptNeedsWork` with the first hint."""
        print(self)
        if not self.passed:
            raise PromptNeedsWork(f"{self.hints[0]} ({len(self.hints)} item(s) to go)")
        path = keep_section(self.lesson, self.prompt)
        print(f"Kept as {path.parent.name}/{path.name}: lesson 13 assembles your template from it.")
        return path


class PromptNeedsWork(AssertionError):
    """A prompt that misses an item of its lesson's checklist."""

    def _render_traceback_(self) -> list[str]:
        return [f"✏️  Not yet: {self}"]


def review_prompt(text: str, lesson: str) -> PromptReview:
    """Review ``text``, a prompt written for ``lesson`` (``"04_durability"``; a
    number such as ``"04"`` or ``4`` works too), against the lesson's checklist."""
    if not isinstance(text, str):
        raise TypeError(f"review_prompt(text, lesson): text is the prompt as a string, "
                        f"got {type(text).__name__}")
    lesson = lesson_name(lesson)
    if not text.strip():
        empty = CheckItem("a prompt", False,
                          "Your prompt is empty: write it in the string above, as you would type "
                          "it to your assistant, then run this cell again.")
        return PromptReview(lesson, text, (empty,))
    items = [CheckItem(f"names {r.label}", r.met_by(text), r.hint)
             for r in LESSON_REQUIREMENTS[lesson]]
    quantities = QUANTITY.findall(text)
    items.append(CheckItem(
        "states its assumptions with numbers", len(quantities) >= 2,
        "State the operating conditions with numbers (how many clients, messages per second, "
        "how long an outage lasts, the latency, a deadline): the assistant derives its timeouts "
        "and sizes from them, or invents them. "
        f"Found {len(quantities)} quantit{'y' if len(quantities) == 1 else 'ies'} with a unit; "
        "give at least two."))
    items.append(CheckItem(
        "asks for failures or the lifecycle before the code",
        bool(FAILURE_WORDS.search(text) and FIRST_WORDS.search(text)),
        "Before any code, ask the assistant to list every realistic failure (and what the code "
        "does about each) or to describe the connection's lifecycle: missing cases show up "
        "there, not in finished code."))
    items.append(CheckItem(
        "asks to explain each design decision", bool(EXPLAIN_WORDS.search(text)),
        "Ask it to explain each mechanism and every value it chooses (intervals, sizes, delays): "
        "an unexplained number is a guess you cannot review."))
    items.append(CheckItem(
        "asks for a self-audit after the code", bool(AUDIT_WORDS.search(text)),
        "End with a self-audit: after the code, the assistant reviews it for this lesson's risks "
        "(message loss, unbounded growth, races, leaked tasks) and lists what it finds."))
    return PromptReview(lesson, text, tuple(items))


def lesson_name(lesson: "str | int") -> str:
    """The lesson folder name for ``"04_durability"``, ``"04"`` or ``4``."""
    names = list(LESSON_REQUIREMENTS)
    if isinstance(lesson, int) and not isinstance(lesson, bool):
        lesson = f"{lesson:02d}"
    if isinstance(lesson, str):
        if lesson in LESSON_REQUIREMENTS:
            return lesson
        matches = [name for name in names if name.split("_", 1)[0] == lesson.strip()]
        if len(matches) == 1:
            return matches[0]
    raise UnknownNameError("lesson with a prompt exercise", str(lesson), names)


def prompts_dir() -> Path:
    """Where the learner's kept prompts go: ``$WSLAB_PROMPTS_DIR``, else
    ``my_prompts/`` in the current folder (the notebook's, in JupyterLab)."""
    return Path(os.environ.get("WSLAB_PROMPTS_DIR") or Path.cwd() / "my_prompts")


def keep_section(lesson: str, prompt: str) -> Path:
    """Write ``prompt`` as ``lesson``'s section of the template; return the file."""
    folder = prompts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{lesson_name(lesson)}.md"
    path.write_text(prompt.strip() + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Template:
    """The learner's production template: one section per lesson, in course order."""

    sections: dict[str, str]
    missing: tuple[str, ...]
    path: Path

    def __str__(self) -> str:
        return self.text

    @property
    def text(self) -> str:
        parts = ["# My production WebSocket prompt template", ""]
        for lesson, section in self.sections.items():
            title = lesson.split("_", 1)[1].replace("_", " ")
            parts += [f"## {lesson[:2]} · {title}", "", section.strip(), ""]
        return "\n".join(parts)


def assemble_template() -> Template:
    """Join the kept sections (:func:`keep_section`), in lesson order, into
    ``template.md`` in :func:`prompts_dir`. Lessons without a kept section are
    listed in ``missing``; nothing is invented for them."""
    folder = prompts_dir()
    lessons = [name for name in LESSON_REQUIREMENTS if name < "13"]  # 01 to 12
    sections = {name: (folder / f"{name}.md").read_text(encoding="utf-8")
                for name in lessons if (folder / f"{name}.md").is_file()}
    template = Template(sections, tuple(n for n in lessons if n not in sections),
                        folder / "template.md")
    folder.mkdir(parents=True, exist_ok=True)
    template.path.write_text(template.text, encoding="utf-8")
    return template
