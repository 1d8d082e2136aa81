"""Google Cloud Storage bucket configuration: access, public exposure, versioning, retention, encryption.

Options (:class:`Options`): ``project`` (default: the connection's or the credentials'
project), ``prefix`` (only buckets whose names start with it), ``conn_id`` (an Airflow
``google_cloud_platform`` connection whose extra holds ``keyfile_dict`` or ``key_path``; default:
Google's standard credential chain). With ``STORAGE_EMULATOR_HOST`` set the client talks to that
endpoint with anonymous credentials, as Google's own client does.

Each bucket is one record, normalised from the documented JSON API resources (the bucket and
its IAM policy) by :func:`bucket_record`. Legacy ACLs are not collected: with uniform
bucket-level access on (a control checked here) they are disabled. Retention is recorded for
information, not checked: not every bucket needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from soc2_evidence.collectors import CollectContext
from soc2_evidence.collectors.support.gcp import gcp_error, gcp_failures
from soc2_evidence.core import config
from soc2_evidence.core.config import SourceConfig
from soc2_evidence.core.datasets import Dataset, must_exist
from soc2_evidence.core.errors import CollectorError, ConfigError, describe
from soc2_evidence.core.staging import BundleWriter

KIND = "gcs_config"
FAMILY = "config"
VERSION = "1.0.0"
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
IAM_POLICY_VERSION = 3  # the version that returns conditional bindings instead of refusing them
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Options(config.Options):
    project: Annotated[
        NonEmpty | None, msgspec.Meta(description="Google Cloud project; unset: the connection's or credentials'")
    ] = None
    prefix: Annotated[NonEmpty | None, msgspec.Meta(description="Only buckets whose names start with it")] = None
    conn_id: Annotated[
        str | None,
        msgspec.Meta(description="Airflow google_cloud_platform connection; unset: Google's standard credential chain"),
    ] = None


BUCKETS = Dataset(
    name="gcs_config.buckets",
    context={
        "project_number": "The project the bucket belongs to",
        "location": "Where the data is",
        "location_type": "Region, dual-region or multi-region: availability, not judged here",
        "storage_class": "Cost class, not a control",
        "time_created": "Dates the bucket",
        "iam_bindings": "The bindings public is computed from",
        "public_bindings": "Which bindings make the bucket public, for remediation",
        "retention_locked": "locked retention is asked of evidence buckets (the archive checks its own)",
        "labels": "Owner and purpose, for remediation",
    },
    existence=must_exist("exists", "At least one configured bucket is read"),
    item="buckets.jsonl",
    key=("name",),
    columns={
        "name": "string",
        "project_number": "string",
        "location": "string",
        "location_type": "string",
        "storage_class": "string",
        "time_created": "string",
        "uniform_bucket_level_access": "boolean",
        "public_access_prevention": "string",
        "iam_bindings": "array",
        "public": "boolean",
        "public_bindings": "array",
        "versioning": "boolean",
        "retention_period_seconds": "integer",
        "retention_locked": "boolean",
        "default_kms_key": "string",
        "access_log_bucket": "string",
        "labels": "object",
    },
    required=("location", "uniform_bucket_level_access", "iam_bindings", "public", "versioning", "labels"),
    value_sets={"public_access_prevention": ("enforced", "inherited", "unspecified")},
    total="buckets",
    description="Every bucket of the project (matching the prefix) with its access, protection and encryption",
)
DATASETS = (BUCKETS,)


def collect(source: SourceConfig, writer: BundleWriter, context: CollectContext) -> None:
    options: Options = source.options
    client = _client(source, context)
    where = f"project {client.project}"
    listing = _BucketListing(client, options.prefix)
    try:
        writer.add_jsonl(BUCKETS.item, listing, description=BUCKETS.description)
    except (*gcp_failures(), OSError) as error:
        raise gcp_error(f"source {source.name}: {where}", error) from error
    except ValueError as error:  # a resource that does not have the documented shape
        raise CollectorError(f"source {source.name}: {where}: {error}") from error
    writer.report_total(BUCKETS.total, listing.count)


def bucket_record(resource: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """One evidence record from a bucket resource and its IAM policy, both as the JSON API returns them.

    A plain function, so recorded API responses are checked through the same code as live ones.
    """
    name = resource.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("a bucket resource without a name")
    iam = resource.get("iamConfiguration") or {}
    retention = resource.get("retentionPolicy")
    bindings = sorted(
        (
            {
                "role": binding["role"],
                "members": sorted(binding.get("members") or []),
                "condition": binding.get("condition"),
            }
            for binding in policy.get("bindings") or []
        ),
        key=lambda binding: json.dumps(binding, sort_keys=True),
    )
    public_bindings = sorted(
        (
            {"role": binding["role"], "member": member}
            for binding in bindings
            for member in binding["members"]
            if member in PUBLIC_MEMBERS
        ),
        key=lambda binding: (binding["role"], binding["member"]),
    )
    try:
        retention_period = int(retention["retentionPeriod"]) if retention else None
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"bucket {name}: retentionPolicy.retentionPeriod is not a number of seconds") from error
    return {
        "name": name,
        "project_number": resource.get("projectNumber"),
        "location": resource.get("location"),
        "location_type": resource.get("locationType"),
        "storage_class": resource.get("storageClass"),
        "time_created": resource.get("timeCreated"),
        "uniform_bucket_level_access": bool((iam.get("uniformBucketLevelAccess") or {}).get("enabled", False)),
        "public_access_prevention": iam.get("publicAccessPrevention"),
        "iam_bindings": bindings,
        "public": bool(public_bindings),
        "public_bindings": public_bindings,
        "versioning": bool((resource.get("versioning") or {}).get("enabled", False)),
        "retention_period_seconds": retention_period,
        "retention_locked": bool(retention.get("isLocked", False)) if retention else None,
        "default_kms_key": (resource.get("encryption") or {}).get("defaultKmsKeyName"),
        "access_log_bucket": (resource.get("logging") or {}).get("logBucket"),
        "labels": dict(sorted((resource.get("labels") or {}).items())),
    }


def control_expectations(dataset: Dataset) -> list[Any]:
    """Control checks on bucket configuration: findings, not failures, when they do not hold."""
    from great_expectations.expectations.row_conditions import Column

    from soc2_evidence.validation.gx import control, expectations

    if dataset is not BUCKETS:
        return []
    in_set = expectations.ExpectColumnValuesToBeInSet
    not_null = expectations.ExpectColumnValuesToNotBeNull
    return [
        control(
            in_set,
            dataset,
            "uniform_access",
            "Uniform bucket-level access is on: IAM alone grants access, legacy ACLs are off",
            remediation="Turn on uniform bucket-level access: --uniform-bucket-level-access",
            column="uniform_bucket_level_access",
            value_set=[True],
        ),
        control(
            in_set,
            dataset,
            "not_public",
            "No bucket is public: public access prevention is enforced, or no IAM binding "
            "grants allUsers or allAuthenticatedUsers",
            remediation="Remove the allUsers and allAuthenticatedUsers bindings named in public_bindings",
            column="public",
            value_set=[False],
            row_condition=Column("public_access_prevention") != "enforced",
        ),
        control(
            in_set,
            dataset,
            "versioning",
            "Object versioning is on, so overwritten or deleted objects can be recovered",
            remediation="Enable object versioning on the bucket (gcloud storage buckets update --versioning)",
            column="versioning",
            value_set=[True],
        ),
        control(
            in_set,
            dataset,
            "public_access_prevented",
            "Public access prevention is enforced, so no later binding or ACL can make the bucket public",
            remediation="Enforce public access prevention (gcloud storage buckets update --public-access-prevention)",
            column="public_access_prevention",
            value_set=["enforced"],
        ),
        control(
            not_null,
            dataset,
            "retention_policy",
            "A retention policy keeps objects from deletion for a set period",
            remediation="Set a retention policy on the bucket (gcloud storage buckets update --retention-period)",
            column="retention_period_seconds",
        ),
        control(
            not_null,
            dataset,
            "cmek",
            "New objects are encrypted with a customer-managed key (CMEK) by default",
            remediation="Set a Cloud KMS default key on the bucket (--default-encryption-key)",
            column="default_kms_key",
        ),
        control(
            not_null,
            dataset,
            "access_logging",
            "Usage and storage logs are written to a log bucket",
            remediation="Enable usage logging to a separate log bucket (gcloud storage buckets update --log-bucket)",
            column="access_log_bucket",
        ),
    ]


class _BucketListing:
    """Bucket records streamed page by page, counted as they go: the list API reports no total.

    Each bucket's IAM policy is fetched as its record is written. Cloud Storage filters by prefix
    itself; the check here keeps the evidence to the configured scope with an endpoint that does
    not (the emulator ignores the parameter).
    """

    def __init__(self, client, prefix: str | None) -> None:
        self.client, self.prefix = client, prefix
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for bucket in self.client.list_buckets(prefix=self.prefix):
            if self.prefix and not bucket.name.startswith(self.prefix):
                continue
            self.count += 1
            policy = bucket.get_iam_policy(requested_policy_version=IAM_POLICY_VERSION).to_api_repr()
            # The library keeps the documented JSON resource as the bucket's properties, with no public accessor.
            yield bucket_record(bucket._properties, policy)


def _client(source: SourceConfig, context: CollectContext):
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import storage

    project = source.options.project
    credentials = None
    conn_id = source.options.conn_id
    if conn_id:
        try:
            credentials, key_project = context.credentials.google_credentials(conn_id, context.resolve_path)
        except ConfigError as error:  # no such connection, or not a Google one
            raise CollectorError(f"source {source.name}: {error}") from error
        except (ValueError, OSError, GoogleAuthError) as error:
            raise CollectorError(
                f"source {source.name}: connection {conn_id!r}: unusable service account key: {describe(error)}"
            ) from error
        project = project or key_project
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        credentials = AnonymousCredentials()
    try:
        client = storage.Client(project=project, credentials=credentials)
    except (GoogleAuthError, OSError, ValueError) as error:
        raise CollectorError(
            f"source {source.name}: cannot create a Cloud Storage client: {describe(error)}"
        ) from error
    if not client.project or client.project == "<none>":
        raise CollectorError(f"source {source.name}: no Google Cloud project; set option 'project'")
    return client
