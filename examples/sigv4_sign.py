#!/usr/bin/env python3
"""Sign an HTTP request with botocore (the AWS SDK for Python's own SigV4 signer) and print
it as the JSON body of sigvault's POST /v1/sigv4/verify: the request exactly as the
receiving service would see it.

    AWS_ACCESS_KEY_ID=SVAK… AWS_SECRET_ACCESS_KEY=… \\
      examples/sigv4_sign.py GET 'https://api.example.test/orders?limit=10' > req.json
    curl -sS -X POST "$SIGVAULT_ADDR/v1/sigv4/verify" -H "Authorization: Bearer $SIGVAULT_TOKEN" --data @req.json

(docs/API.md, "Example: a request signed by botocore".)

Options: --region (eu-west-1), --service (execute-api), --body TEXT, --presign SECONDS
(a presigned URL instead of an Authorization header), --header 'Name: value' (repeatable).
The secret is read from the environment, never from argv.
"""
import argparse
import base64
import json
import os
import sys
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method")
    p.add_argument("url")
    p.add_argument("--region", default="eu-west-1")
    p.add_argument("--service", default="execute-api")
    p.add_argument("--body", default="")
    p.add_argument("--presign", type=int, default=None)
    p.add_argument("--header", action="append", default=[])
    args = p.parse_args()

    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        print("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", file=sys.stderr)
        return 2

    headers = {}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    body = args.body.encode()
    request = AWSRequest(method=args.method, url=args.url, data=body, headers=headers)
    credentials = Credentials(key_id, secret)
    if args.presign is not None:
        SigV4QueryAuth(credentials, args.service, args.region, expires=args.presign).add_auth(request)
    else:
        SigV4Auth(credentials, args.service, args.region).add_auth(request)

    prepared = request.prepare()
    url = urlsplit(prepared.url)
    sent = [["Host", url.netloc]] + [[k, v] for k, v in prepared.headers.items()]
    json.dump(
        {
            "method": prepared.method,
            "path": url.path or "/",
            "query": url.query,
            "headers": sent,
            "body": base64.b64encode(body).decode(),
            "user_agent": "botocore-example",
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
