#!/usr/bin/env python3
"""moto's S3 server (PyPI `moto[server]`) for the S3 tests, with one change: request signatures
are not recomputed. moto's SigV4 check disagrees with restic's S3 client (minio-go) on listing
requests with empty query values ("the request signature we calculated does not match"), so
the tests could not get past `restic snapshots`. Everything else is moto's own: the access key
must exist, and every request is authorised against that key's IAM policy, with versioning and
object lock enforced as S3 does.

usage: moto_server.py -H 127.0.0.1 -p PORT
"""
import sys

from moto.iam import access_control
from moto.server import main

access_control.IAMRequestBase.check_signature = lambda self: None

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
