#!/usr/bin/env python3
"""Sets up a bucket on a running moto_server the way the book tells operators to set up an S3
destination for the backup host: versioning and object lock (compliance, 30 days by default),
and keys — the backup host's, which may read, write and remove only restic's lock files, the
trusted host's, which may also delete (retention), and a full one (s3:* on the bucket, as a
stolen administrator's key would be) to show what the lock still refuses. Then turns moto's authentication on,
so every later request is checked against those policies.

usage: moto_bucket.py ENDPOINT BUCKET   (prints the two keys as shell assignments)
"""
import json
import sys
import urllib.request

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
anon = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="setup",
    aws_secret_access_key="setup",
)
s3 = boto3.client("s3", **anon)
iam = boto3.client("iam", **anon)

s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
s3.put_object_lock_configuration(
    Bucket=bucket,
    ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}},
    },
)

# The policies of the README, word for word in their effect. moto checks a HEAD of the bucket
# as `s3:HeadBucket` (AWS checks `s3:ListBucket`): it is added here, not in the README.
arn = f"arn:aws:s3:::{bucket}"
listing = ["s3:ListBucket", "s3:GetBucketLocation", "s3:HeadBucket"]
backup_host = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": listing, "Resource": arn},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{arn}/*"},
        {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"{arn}/locks/*"},
    ],
}
trusted_host = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": listing, "Resource": arn},
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": f"{arn}/*",
        },
    ],
}
full = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": [arn, f"{arn}/*"]}],
}
for user, policy in (
    ("backup-host", backup_host),
    ("trusted-host", trusted_host),
    ("full", full),
):
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="restic", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    var = user.upper().replace("-", "_")
    print(f"{var}_KEY={key['AccessKeyId']}")
    print(f"{var}_SECRET={key['SecretAccessKey']}")

# From now on every request is authenticated and authorised.
urllib.request.urlopen(
    urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
)
