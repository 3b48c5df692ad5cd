"""A real SMTP server (aiosmtpd) that never takes a message, for the backup-relay tests.

Usage: refusing_smtp.py PORT MODE [CERT KEY]

MODE "rcpt": answer every RCPT TO with 554 5.7.1 (a relay that refuses us for good).
MODE "tls": implicit TLS (smtps) with the given self-signed certificate, which a client
  verifying against the public roots must refuse: a TLS failure.
Every RCPT it sees is printed, so a test can tell the primary was really tried.
"""

import ssl
import sys
import time

from aiosmtpd.controller import Controller

port, mode = int(sys.argv[1]), sys.argv[2]


class Refuse:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        print(f"refused RCPT {address}", flush=True)
        return "554 5.7.1 Relaying denied for this sender"

    async def handle_DATA(self, server, session, envelope):
        return "554 5.6.0 Not taking anything"


kwargs = {}
if mode == "tls":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    kwargs["ssl_context"] = ctx
elif mode != "rcpt":
    sys.exit(f"unknown mode {mode!r}")

controller = Controller(Refuse(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
