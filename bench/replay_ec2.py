#!/usr/bin/env python3
"""Replays a recorded EC2 DescribeInstances answer on loopback, for the large-state benchmark.

usage: replay_ec2.py PORT DESCRIBE_XML [--log FILE]

Every DescribeInstances (any filter) gets the recorded body; any other action gets an EC2 error
(and is logged), so a benchmark that expects only describes notices when more calls are made.
"""
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    port = int(sys.argv[1])
    body = open(sys.argv[2], "rb").read()
    log = open(sys.argv[4], "a") if len(sys.argv) > 4 and sys.argv[3] == "--log" else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(n).decode())
            action = (form.get("Action") or [""])[0]
            if log:
                log.write(action + "\n")
                log.flush()
            if action == "DescribeInstances":
                self.answer(200, body)
            else:
                self.answer(
                    400,
                    (
                        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                        f"<Code>UnsupportedOperation</Code><Message>replay has no {action}</Message>"
                        "</Error></Errors><RequestID>replay</RequestID></Response>"
                    ).encode(),
                )

        def answer(self, status, data):
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
