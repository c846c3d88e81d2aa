"""S3 configuration the AWS way: the same variables and files as the AWS CLI and boto3.

Credentials: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` (unless
a profile is named explicitly), else the profile (``--s3-profile``, ``AWS_PROFILE``,
``AWS_DEFAULT_PROFILE`` or ``default``) in ``~/.aws/credentials``
(``AWS_SHARED_CREDENTIALS_FILE``), else in ``~/.aws/config`` (``AWS_CONFIG_FILE``; sections
``[profile NAME]``, ``[default]``). Region: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
profile's ``region``, else ``us-east-1``. Endpoint: ``--s3-endpoint``,
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's ``endpoint_url``, else AWS.
A custom endpoint (MinIO, Ceph RGW, R2, moto) is addressed path-style.

Secrets are :class:`~amly.config.Secret` from the moment they are read: they reach only the
signature, never a log, an error or a URL.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..config import Secret
from ..errors import AuthError, UsageError
from .sigv4 import Credentials

DEFAULT_REGION = "us-east-1"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")


@dataclasses.dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix`` split; ``prefix`` has no leading slash.

    >>> S3Location.parse("s3://survey-2024/berlin/day 1/")
    S3Location(bucket='survey-2024', prefix='berlin/day 1/')
    >>> str(S3Location.parse("s3://b-1"))
    's3://b-1/'
    >>> S3Location.parse("s3://Bad_Bucket/x")
    Traceback (most recent call last):
    ...
    amly.errors.UsageError: s3://Bad_Bucket/x: 'Bad_Bucket' is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens)
    """

    bucket: str
    prefix: str = ""

    @staticmethod
    def is_s3(text: str) -> bool:
        return text.startswith("s3://")

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not cls.is_s3(url):
            raise UsageError(f"{url}: not an s3:// URL", hint="write s3://BUCKET/PREFIX")
        bucket, _, prefix = url[5:].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise UsageError(
                f"{url}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, "
                "digits, dots and hyphens)"
            )
        return cls(bucket, prefix.lstrip("/"))

    def join(self, name: str) -> str:
        """The key of ``name`` under this prefix.

        >>> S3Location("b", "p").join("x.jpg"), S3Location("b", "p/").join("x.jpg")
        ('p/x.jpg', 'p/x.jpg')
        """
        if not self.prefix:
            return name
        return f"{self.prefix.rstrip('/')}/{name}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclasses.dataclass(frozen=True)
class S3Config:
    """Where and as whom to talk S3. ``endpoint`` is ``None`` for AWS itself."""

    credentials: Credentials
    region: str = DEFAULT_REGION
    endpoint: str | None = None
    path_style: bool = False
    profile: str | None = None
    #: Integrity of multipart parts: "md5" (Content-MD5 + ETag, every store) or "crc32"
    #: (S3 flexible checksums, verified by the store: AWS, MinIO...; 2x less client CPU).
    checksum: str = "md5"

    def base_url(self, bucket: str) -> str:
        """The URL prefix of ``bucket`` (virtual-hosted on AWS, path-style elsewhere).

        >>> c = S3Config(Credentials("AK", Secret("sk")), region="eu-west-1")
        >>> c.base_url("b1"), c.base_url("with.dots")
        ('https://b1.s3.eu-west-1.amazonaws.com', 'https://s3.eu-west-1.amazonaws.com/with.dots')
        >>> S3Config(Credentials("AK", Secret("sk")), endpoint="http://127.0.0.1:9000/").base_url("b")
        'http://127.0.0.1:9000/b'
        """
        if self.endpoint is not None:
            return f"{self.endpoint.rstrip('/')}/{bucket}"
        host = f"s3.{self.region}.amazonaws.com"
        if self.path_style or "." in bucket:
            return f"https://{host}/{bucket}"
        return f"https://{bucket}.{host}"

    @property
    def where(self) -> str:
        """The endpoint for messages (never carries credentials)."""
        return self.endpoint or f"AWS S3 ({self.region})"

    @classmethod
    def from_env(
        cls,
        *,
        endpoint: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> S3Config:
        """Resolve credentials, region and endpoint as the AWS CLI does (see module doc)."""
        env = os.environ if env is None else env
        explicit_profile = profile is not None
        profile = profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
        home = Path(env.get("HOME") or Path.home())
        cred_file = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
        conf_file = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
        creds_section = _section(cred_file, profile)
        conf_section = _section(
            conf_file, "default" if profile == "default" else f"profile {profile}"
        )

        creds: Credentials | None = None
        if not explicit_profile and env.get("AWS_ACCESS_KEY_ID"):
            creds = _credentials(
                env.get("AWS_ACCESS_KEY_ID"),
                env.get("AWS_SECRET_ACCESS_KEY"),
                env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN"),
                "AWS_SECRET_ACCESS_KEY",
            )
        for section, where in ((creds_section, cred_file), (conf_section, conf_file)):
            if creds is None and section.get("aws_access_key_id"):
                creds = _credentials(
                    section.get("aws_access_key_id"),
                    section.get("aws_secret_access_key"),
                    section.get("aws_session_token"),
                    f"aws_secret_access_key of profile {profile!r} in {where}",
                )
        if creds is None:
            raise AuthError(
                "no S3 credentials found",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN "
                f"for temporary ones), or add profile {profile!r} to {cred_file}",
            )
        region = (
            region
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or conf_section.get("region")
            or DEFAULT_REGION
        )
        endpoint = (
            endpoint
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or conf_section.get("endpoint_url")
        )
        if endpoint is not None:
            if not re.match(r"^https?://[^/@\s]+(/.*)?$", endpoint):
                raise UsageError(
                    f"S3 endpoint {endpoint!r} is not an http(s) URL",
                    hint="e.g. --s3-endpoint http://127.0.0.1:9000 (no credentials in it)",
                )
            endpoint = endpoint.rstrip("/")
        checksum = (env.get("AMLY_S3_CHECKSUM") or "md5").lower()
        if checksum not in ("md5", "crc32"):
            raise UsageError(
                f"AMLY_S3_CHECKSUM={checksum!r}: not a checksum amly knows", hint="md5 or crc32"
            )
        return cls(
            credentials=creds,
            region=region,
            endpoint=endpoint,
            path_style=endpoint is not None,
            profile=profile,
            checksum=checksum,
        )


def _section(path: Path, name: str) -> dict[str, str]:
    """One section of an INI file, ``{}`` when the file or section is absent."""
    if not path.is_file():
        return {}
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as e:
        raise UsageError(
            f"{path}: cannot be read as an AWS config file ({type(e).__name__})",
            hint="fix its syntax: [section] headers and key = value lines",
        ) from None
    if not parser.has_section(name):
        return {}
    return {k: v.strip() for k, v in parser.items(name) if v.strip()}


def _credentials(
    access: str | None, secret: str | None, token: str | None, secret_name: str
) -> Credentials:
    if not access or not secret or not secret.strip():
        raise AuthError(
            f"S3 access key given without its secret ({secret_name} is missing)",
            hint="set both the access key id and the secret access key",
        )
    return Credentials(
        access_key=access.strip(),
        secret_key=Secret(secret),
        session_token=Secret(token) if token and token.strip() else None,
    )
