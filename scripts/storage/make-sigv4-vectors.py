#!/usr/bin/env python3
"""Signature V4 vectors for S3, produced with botocore (the signer of the AWS CLI and boto3).

FastGPU's own S3 client is checked against these: every case is signed here at a fixed time with
fixed credentials, and the canonical request, string to sign, signature, Authorization header and
presigned URL are written as JSON. Run it again to regenerate:

    python3 scripts/storage/make-sigv4-vectors.py > Tests/FastGPUStorageTests/Fixtures/sigv4-botocore.json
"""
import datetime
import json
import sys

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FIXED = datetime.datetime(2026, 12, 3, 12, 34, 56)


class FixedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return FIXED

    @classmethod
    def now(cls, tz=None):
        return FIXED.replace(tzinfo=tz) if tz else FIXED


botocore.auth.datetime.datetime = FixedDatetime

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
REGION = "us-east-1"

# (name, method, url, headers, body)
CASES = [
    ("get-object", "GET", "http://127.0.0.1:9000/results/run-1/output.npy", {}, b""),
    ("put-object", "PUT", "http://127.0.0.1:9000/results/run-1/output.npy", {"Content-Type": "application/octet-stream"}, b"hello, bucket\n"),
    ("empty-object", "PUT", "http://127.0.0.1:9000/results/empty", {}, b""),
    ("space-in-key", "GET", "http://127.0.0.1:9000/results/my%20file.txt", {}, b""),
    ("unicode-key", "GET", "http://127.0.0.1:9000/results/mod%C3%A8le/%E6%A8%A1%E5%9E%8B.onnx", {}, b""),
    ("plus-and-equals-in-key", "GET", "http://127.0.0.1:9000/results/a%2Bb%3Dc.txt", {}, b""),
    ("list-v2", "GET", "http://127.0.0.1:9000/results?list-type=2&prefix=run-1%2F&max-keys=1000", {}, b""),
    ("list-v2-continuation", "GET", "http://127.0.0.1:9000/results?list-type=2&continuation-token=1%2Fabc%3D%3D&prefix=a%20b%2Bc", {}, b""),
    ("repeated-query-keys", "GET", "http://127.0.0.1:9000/results?b=2&a=2&a=1&c", {}, b""),
    ("create-multipart", "POST", "http://127.0.0.1:9000/results/big.bin?uploads", {}, b""),
    ("upload-part", "PUT", "http://127.0.0.1:9000/results/big.bin?partNumber=2&uploadId=abc%2Fdef%3D", {}, b"x" * 1000),
    ("virtual-host", "GET", "http://results.s3.us-east-1.amazonaws.com/run-1/output.npy", {}, b""),
    ("extra-headers", "PUT", "http://127.0.0.1:9000/results/meta.json",
     {"Content-Type": "application/json", "X-Amz-Meta-Sha256": "abc", "Content-MD5": "XUFAKrxLKna5cZ2REBfFkg=="}, b"{}"),
]


def sign(name, method, url, headers, body):
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    signer = botocore.auth.S3SigV4Auth(CREDENTIALS, "s3", REGION)
    canonical = None
    string_to_sign = None
    original_canonical = signer.canonical_request
    original_sts = signer.string_to_sign

    def capture_canonical(request):
        nonlocal canonical
        canonical = original_canonical(request)
        return canonical

    def capture_sts(request, canonical_request):
        nonlocal string_to_sign
        string_to_sign = original_sts(request, canonical_request)
        return string_to_sign

    signer.canonical_request = capture_canonical
    signer.string_to_sign = capture_sts
    signer.add_auth(request)
    signed = {k: v for k, v in request.headers.items()}

    presign_request = AWSRequest(method=method, url=url, headers={}, data=b"")
    presigner = botocore.auth.S3SigV4QueryAuth(CREDENTIALS, "s3", REGION, expires=3600)
    presigner.add_auth(presign_request)
    return {
        "name": name,
        "method": method,
        "url": url,
        "headers": headers,
        "body": body.decode(),
        "canonicalRequest": canonical,
        "stringToSign": string_to_sign,
        "authorization": signed["Authorization"],
        "amzDate": signed["X-Amz-Date"],
        "contentSha256": signed["X-Amz-Content-SHA256"],
        "presignedURL": presign_request.url,
    }


json.dump({
    "generator": f"botocore {botocore.__version__}",
    "accessKeyID": CREDENTIALS.access_key,
    "secretAccessKey": CREDENTIALS.secret_key,
    "region": REGION,
    "time": FIXED.strftime("%Y%m%dT%H%M%SZ"),
    "presignExpiresSeconds": 3600,
    "cases": [sign(*case) for case in CASES],
}, sys.stdout, indent=2, ensure_ascii=False)
print()
