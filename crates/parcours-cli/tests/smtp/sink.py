"""A real SMTP server for the email tests: aiosmtpd on 127.0.0.1, every message it accepts
written whole (headers and body, as received) to DIR/NNNN.eml, then its sender, recipients
and size on stdout. The first line printed is the port it listens on.

    python sink.py DIR [PORT [DELAY_MS]]

DELAY_MS makes each message take that long to accept (a slow server: a node killed while it
sends is likely to be in the middle of one).
"""

import asyncio
import os
import socket
import sys

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, directory, delay):
        self.directory = directory
        self.delay = delay
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        path = os.path.join(self.directory, "%06d.eml" % self.count)
        tmp = path + ".part"
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, path)
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    directory = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "0" else free_port()
    os.makedirs(directory, exist_ok=True)
    delay = int(sys.argv[3]) / 1000.0 if len(sys.argv) > 3 else 0.0
    controller = Controller(Keep(directory, delay), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    try:
        sys.stdin.read()  # runs until the test closes our stdin (or kills us)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
