#!/usr/bin/env python3
"""Tries to destroy the history of a restic repository in an object-locked bucket, as whoever
holds a key with every S3 permission could: deletes every version of every object under
PREFIX, one by one (with the governance bypass asked for). Prints `versions=N markers=K
destroyed=M`: K delete markers (what a forget leaves); under a compliance lock M is 0.

usage: destroy_versions.py ENDPOINT BUCKET PREFIX   (the key in AWS_ACCESS_KEY_ID/…SECRET…)
"""
import sys

import boto3
from botocore.exceptions import ClientError

endpoint, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
listing = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
versions = listing.get("Versions", [])
destroyed = 0
for v in versions:
    try:
        s3.delete_object(
            Bucket=bucket,
            Key=v["Key"],
            VersionId=v["VersionId"],
            BypassGovernanceRetention=True,
        )
        destroyed += 1
    except ClientError:
        pass
markers = len(listing.get("DeleteMarkers", []))
print(f"versions={len(versions)} markers={markers} destroyed={destroyed}")
