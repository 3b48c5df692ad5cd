"""A real SMTP server (aiosmtpd) with TLS and AUTH that stores what it takes in a Maildir.

Usage: tls_smtp.py PORT MODE CERT KEY MAILDIR USER PASSWORD

MODE "starttls": plain connection that requires STARTTLS before anything else.
MODE "smtps": implicit TLS from the first byte.
Either way AUTH (PLAIN/LOGIN) with USER and PASSWORD is required before MAIL; every AUTH
attempt is printed ("auth ok USER" / "auth failed USER").
"""

import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult

port, mode, cert, key, maildir, user, password = sys.argv[1:8]
port = int(port)


def authenticator(server, session, envelope, mechanism, auth_data):
    login = auth_data.login.decode()
    ok = login == user and auth_data.password.decode() == password
    print(f"auth {'ok' if ok else 'failed'} {login}", flush=True)
    # handled=False: aiosmtpd answers a failure with 535 itself.
    return AuthResult(success=ok, handled=False)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
kwargs = dict(authenticator=authenticator, auth_required=True)
if mode == "starttls":
    kwargs.update(tls_context=ctx, require_starttls=True)
elif mode == "smtps":
    # The whole session is encrypted; aiosmtpd only counts STARTTLS as TLS for AUTH.
    kwargs.update(ssl_context=ctx, auth_require_tls=False)
else:
    sys.exit(f"unknown mode {mode!r}")

controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
