"""A deliberately slow SMTP server for the crash tests: aiosmtpd writing a Maildir, pausing inside DATA.

Usage: slow_smtp.py PORT MAILDIR EVENTS_FILE MODE DELAY_SECONDS

MODE "before": on DATA, note "begin <Message-ID>", sleep, then store the message and answer 250.
  A client killed during the sleep drops the connection; aiosmtpd then cancels the handler,
  so the message is NOT stored: the crash landed before the server accepted it.
MODE "after": store the message, note "stored <Message-ID>", sleep, then answer 250.
  A client killed during the sleep leaves a stored message it never heard accepted: the
  at-least-once case, where the re-send must carry the same Message-ID.

Every step is appended to EVENTS_FILE so the test can time its SIGKILL from the outside.
"""

import asyncio
import email
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

port, maildir, events, mode, delay = (
    int(sys.argv[1]),
    sys.argv[2],
    sys.argv[3],
    sys.argv[4],
    float(sys.argv[5]),
)
if mode not in ("before", "after"):
    sys.exit(f"unknown mode {mode!r}")


def note(what, envelope):
    msg = email.message_from_bytes(envelope.original_content or envelope.content)
    with open(events, "a") as f:
        f.write(f"{what} {msg.get('Message-ID')}\n")
        f.flush()


class Slow(Mailbox):
    async def handle_DATA(self, server, session, envelope):
        note("begin", envelope)
        if mode == "before":
            await asyncio.sleep(delay)
            reply = await super().handle_DATA(server, session, envelope)
            note("stored", envelope)
            return reply
        reply = await super().handle_DATA(server, session, envelope)
        note("stored", envelope)
        await asyncio.sleep(delay)
        return reply


controller = Controller(Slow(maildir), hostname="127.0.0.1", port=port)
controller.start()
print(f"slow smtp on 127.0.0.1:{port} mode={mode} delay={delay}s", flush=True)
threading.Event().wait()
