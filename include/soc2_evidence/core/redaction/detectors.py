"""The detectors run over all text, after structured redaction: token formats, key blocks, URLs, headers.

Each detector is a pattern whose ``secret`` group (or ``secret_<alternative>`` groups, since
a group name cannot repeat) is replaced by a marker. Provider formats share one pattern with
a group per provider, so text is scanned once for all of them, and counted per provider.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Detector:
    """A pattern whose matched ``secret*`` group is replaced by a marker.

    ``per_group``: the detector counts each ``secret_<name>`` group under ``<name>`` (one scan,
    many formats). ``accept``: a test the matched secret must pass, for formats a pattern alone
    cannot tell from ordinary words. A ``name`` group must pass the same key-name test as
    structured keys, so text and structured redaction agree on what is a secret.
    """

    name: str
    pattern: re.Pattern[str]
    per_group: bool = False
    accept: Callable[[str], bool] | None = None

    @functools.cached_property
    def secret_groups(self) -> tuple[str, ...]:
        return tuple(group for group in self.pattern.groupindex if group.startswith("secret"))

    @functools.cached_property
    def name_groups(self) -> tuple[str, ...]:
        return tuple(group for group in self.pattern.groupindex if group.startswith("name"))

    def counted_as(self, group: str) -> str:
        return group.removeprefix("secret_") if self.per_group else self.name


_B = r"(?<![A-Za-z0-9])"  # a token starts here, not inside a longer word
_E = r"(?![A-Za-z0-9_])"
# Provider token formats: (name, pattern of the secret). Each has a fixed prefix or shape, so
# matching needs no context and works in names, commit subjects, URLs and headers alike.
PROVIDER_FORMATS: tuple[tuple[str, str], ...] = (
    ("github_token", rf"{_B}(?:gh[pousr]_[A-Za-z0-9]{{30,}}|github_pat_[A-Za-z0-9_]{{30,}}){_E}"),
    ("gitlab_token", rf"{_B}gl(?:pat|dt|rt|cbt|ptt|ft|imt|oas|soat|agent|sa|cc)-[A-Za-z0-9_-]{{20,}}"),
    ("slack_token", rf"{_B}(?:xox[abposer]-[A-Za-z0-9-]{{10,}}|xapp-\d-[A-Za-z0-9-]{{20,}})"),
    ("slack_webhook", r"(?<=hooks\.slack\.com/)(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}"),
    ("discord_webhook", r"(?<=/api/webhooks/)\d{5,}/[A-Za-z0-9_-]{20,}"),
    ("teams_webhook", r"(?<=\.webhook\.office\.com/)webhookb2/[A-Za-z0-9@/_-]{20,}"),
    ("stripe_key", rf"{_B}(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{{16,}}|{_B}whsec_[A-Za-z0-9]{{20,}}"),
    ("google_api_key", rf"{_B}AIza[0-9A-Za-z_-]{{35}}{_E}"),
    ("google_oauth", rf"{_B}(?:GOCSPX-[A-Za-z0-9_-]{{20,}}|ya29\.[0-9A-Za-z_-]{{20,}}|1//0[A-Za-z0-9_-]{{30,}})"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ABIA|ACCA|A3T[A-Z0-9])[0-9A-Z]{16}\b"),
    ("azure_storage_key", r"(?i:(?<=AccountKey=)|(?<=SharedAccessKey=)|(?<=PrimaryKey=))[A-Za-z0-9+/]{20,}={0,2}"),
    ("azure_sas_signature", r"(?<=[?&;]sig=)[A-Za-z0-9%+/=]{16,}"),
    ("azure_client_secret", rf"{_B}[A-Za-z0-9_~.-]{{3}}[78]Q~[A-Za-z0-9_~.-]{{31,34}}{_E}"),
    ("openai_key", rf"{_B}sk-(?:proj-|svcacct-|admin-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{{32,}}"),
    ("npm_token", rf"{_B}npm_[A-Za-z0-9]{{36}}{_E}"),
    ("pypi_token", rf"{_B}pypi-AgE[A-Za-z0-9_-]{{40,}}"),
    ("sendgrid_key", rf"{_B}SG\.[A-Za-z0-9_-]{{16,}}\.[A-Za-z0-9_-]{{30,}}"),
    ("twilio_key", rf"{_B}SK[0-9a-f]{{32}}{_E}"),
    ("mailchimp_key", rf"{_B}[0-9a-f]{{32}}-us[0-9]{{1,2}}{_E}"),
    ("mailgun_key", rf"{_B}key-[0-9a-f]{{32}}{_E}"),
    ("square_token", rf"{_B}(?:sq0(?:atp|csp)-[A-Za-z0-9_-]{{22,}}|EAAA[A-Za-z0-9_-]{{60,}})"),
    ("shopify_token", rf"{_B}shp(?:at|ca|pa|ss)_[a-fA-F0-9]{{32}}{_E}"),
    ("atlassian_token", rf"{_B}(?:ATATT3|ATCTT3|ATOAT)[A-Za-z0-9_=-]{{50,}}"),
    ("digitalocean_token", rf"{_B}do[opr]_v1_[a-f0-9]{{64}}{_E}"),
    ("vault_token", rf"{_B}hv[sbr]\.[A-Za-z0-9_-]{{24,}}"),
    ("terraform_token", rf"{_B}[A-Za-z0-9]{{14}}\.atlasv1\.[A-Za-z0-9_-]{{60,}}"),
    ("telegram_token", rf"{_B}[0-9]{{8,10}}:AA[A-Za-z0-9_-]{{33}}{_E}"),
    ("huggingface_token", rf"{_B}hf_[A-Za-z0-9]{{34,}}{_E}"),
    ("databricks_token", rf"{_B}dapi[a-f0-9]{{32}}(?:-\d)?{_E}"),
    ("newrelic_key", rf"{_B}NR(?:AK|AA|II|JS)-[A-Za-z0-9]{{19,}}"),
    ("linear_key", rf"{_B}lin_(?:api|oauth)_[A-Za-z0-9]{{40}}"),
    ("postman_key", rf"{_B}PMAK-[a-f0-9]{{24}}-[a-f0-9]{{34}}"),
    ("doppler_token", rf"{_B}dp\.(?:st|pt|ct|sa|scim|audit)\.[A-Za-z0-9_.-]{{20,}}"),
    ("age_secret_key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    ("docker_hub_token", rf"{_B}dckr_pat_[A-Za-z0-9_-]{{20,}}"),
    ("grafana_token", rf"{_B}(?:glsa_[A-Za-z0-9]{{32}}_[a-f0-9]{{8}}|glc_[A-Za-z0-9+/]{{32,}}={{0,2}})"),
    ("pulumi_token", rf"{_B}pul-[a-f0-9]{{40}}{_E}"),
    ("planetscale_token", rf"{_B}pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.-]{{32,}}"),
    ("alibaba_key_id", rf"{_B}LTAI[A-Za-z0-9]{{12,20}}{_E}"),
    ("tencent_key_id", rf"{_B}AKID[A-Za-z0-9]{{32}}{_E}"),
    ("rubygems_key", rf"{_B}rubygems_[a-f0-9]{{48}}{_E}"),
    ("nuget_key", rf"{_B}oy2[a-z0-9]{{43}}{_E}"),
    ("artifactory_key", rf"{_B}AKCp[A-Za-z0-9]{{60,}}"),
    ("easypost_key", rf"{_B}EZ[AT]K[a-zA-Z0-9]{{54}}"),
    ("flutterwave_key", rf"{_B}FLW(?:SECK|PUBK)(?:_TEST)?-[a-h0-9]{{32}}-X"),
    ("mapbox_token", rf"{_B}sk\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
    ("dynatrace_token", rf"{_B}dt0c01\.[A-Z0-9]{{24}}\.[A-Z0-9]{{64}}"),
    ("sentry_token", rf"{_B}sntry[su]_[A-Za-z0-9_=+/-]{{30,}}"),
    ("jwt", rf"{_B}eyJ[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]*"),
)
# The fixed text each provider format starts with or is anchored on, for the prefilter.
PROVIDER_ANCHORS = (
    "gh", "github_pat_", "gl", "xox", "xapp-", "hooks.slack.com", "/api/webhooks/", "webhook.office.com", "_live_",
    "_test_", "whsec_", "AIza", "GOCSPX-", "ya29.", "1//0", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ABIA", "ACCA",
    "A3T", "AccountKey=", "SharedAccessKey=", "PrimaryKey=", "sig=", "Q~", "sk-", "npm_", "pypi-", "SG.", "SK", "-us",
    "key-", "sq0", "EAAA", "shp", "ATATT3", "ATCTT3", "ATOAT", "_v1_", "hvs.", "hvb.", "hvr.", ".atlasv1.", ":AA",
    "hf_", "dapi", "NR", "lin_", "PMAK-", "dp.", "AGE-SECRET-KEY-", "dckr_pat_", "glsa_", "glc_", "pul-", "pscale_",
    "LTAI", "AKID", "rubygems_", "oy2", "AKCp", "EZAK", "EZTK", "FLW", "sk.eyJ", "dt0c01.", "sntr", "eyJ",
)  # fmt: skip

# A key header of any kind (PEM, OpenSSH, PGP "PRIVATE KEY BLOCK", encrypted), to its END line; a BEGIN
# without an END takes the rest of the text: a truncated key is still a key. The body stops at the next
# BEGIN, so a BEGIN without an END is not rescanned to the end of the text from each position.
_PRIVATE_KEY = re.compile(
    r"(?P<secret>-----BEGIN[ A-Z0-9]*? PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-(?!----BEGIN ))*?"
    r"(?:-----END[ A-Z0-9]*? PRIVATE KEY(?: BLOCK)?-----|\Z))"
)
# PuTTY .ppk: the private lines, and the MAC computed over them.
_PUTTY = re.compile(
    r"Private-Lines: *\d+\r?\n(?P<secret>(?:[A-Za-z0-9+/=]+(?:\r?\n|\Z))+)|Private-MAC: *(?P<secret_mac>\S+)"
)
# "://user:password@host": the password may hold '/' and '@' (it then runs to the last '@' before the host).
# Anchored on "://" (not on the scheme) so a long run of letters is not rescanned from each position.
_URL_PASSWORD = re.compile(r"(?<=[a-zA-Z0-9+.-])://[^:/\s@\"'<>]*:(?P<secret>[^\s\"'<>]+)@(?=[^\s@\"'<>/]+)")
# An Authorization header's credentials, whatever the scheme; "Bearer x", "token x" on their own.
_AUTH_HEADER = re.compile(
    r"(?i)(?<![\w-])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|bot|apikey|sso-key|ntlm"
    r"|negotiate|aws4-hmac-sha256|hmac)\s+)?(?P<secret>[^\s\"',;]+(?:,\s*(?:signature|credential)=[^\s\"',;]+)*)"
    r"|(?<![\w-])(?:bearer|token)\s+(?P<secret_bare>[A-Za-z0-9._~+/-]{16,}=*)"
)
# Command lines: mysql -pSECRET, --password SECRET, --token=SECRET, curl -u user:SECRET, sshpass -p SECRET.
_COMMAND_LINE = re.compile(
    r"\bmysql\w*\b[^\n]*?\s-p(?P<secret>[^\s-][^\s]*)"
    r"|(?<![\w-])--(?:[\w-]*-)?(?:password|passwd|pass|token|secret|api-key|apikey|auth-token|access-key|secret-key)"
    r"(?:=|[ \t]+)(?P<secret_option>[^\s-][^\s]*)"
    r"|(?:\s-u|--user)[ \t]+[^\s:]+:(?P<secret_user>[^\s\"']+)"
    r"|\bsshpass[ \t]+-p[ \t]*(?P<secret_sshpass>\S+)"
)
# Formats that put a secret after a keyword and a space: redis requirepass/masterauth, .netrc (a
# "password x" line, or machine ... password x on one line), Dockerfile ENV/ARG NAME value (the name
# must pass the key-name test).
_KEYWORD_VALUE = re.compile(
    r"(?m)^[ \t]*(?:requirepass|masterauth)[ \t]+(?P<secret>\S+)"
    r"|^[ \t]*(?:password|passwd|account)[ \t]+(?P<secret_netrc>\S+)[ \t]*$"
    # Any "name value" line whose name names a secret: ldap bindpw, sshd-like and space-separated configs.
    r"|^[ \t]*(?P<name_line>[A-Za-z_][\w.-]*)[ \t]+(?P<secret_line>[^\s#;=:][^\s;]*)[ \t]*;?[ \t]*$"
    r"|\b(?:machine|default)\b[^\n]*?[ \t](?:password|passwd|account)[ \t]+(?P<secret_netrc_line>\S+)"
    r"|^[ \t]*(?:ENV|ARG)[ \t]+(?P<name>[A-Za-z_][\w.-]*)[ \t]+(?P<secret_env>[^\s=][^\n]*)"
    r"|(?i:\bwith[ \t]+(?:encrypted[ \t]+)?password|\bidentified[ \t]+(?:with[ \t]+\w+[ \t]+)?by)[ \t]*'(?P<secret_sql>(?:[^'\n]|'')*)'"
)
_SENSITIVE_WORD = (
    r"(?i:pass(?:word|wd|phrase|code)?|pwd|pw|secret|token|credential|creds|auth|key|sig|pin|otp|cookie"
    r"|requirepass|masterauth)"
)
# A YAML block scalar under a sensitive key ("secret: |"): every more-indented line below it.
_BLOCK_SCALAR = re.compile(
    r"(?m)^(?P<indent>[ \t]*)(?:- )?(?P<name>[\w.-]+)[ \t]*:[ \t]*[|>][+-]?[0-9]?[ \t]*\r?\n"
    r"(?P<secret>(?:(?P=indent)[ \t]+\S[^\n]*(?:\n|\Z)|[ \t]*\r?\n(?=(?P=indent)[ \t]+\S))+)"
    # A heredoc (HCL, shell) under a sensitive name: the lines up to its terminator.
    r"|(?P<name_heredoc>[A-Za-z_][\w.-]*)[ \t]*=?[ \t]*<<[-~]?[\"']?(?P<tag>[A-Za-z_]\w*)[\"']?[ \t]*\r?\n"
    r"(?P<secret_heredoc>(?:(?![ \t]*(?P=tag)[ \t]*$)[^\n]*\n)*?)(?=[ \t]*(?P=tag)[ \t]*$)"
)
# NAME = value, NAME: value, "NAME": "value", NAME => value, NAME := value. The name is a run of
# word characters holding a sensitive word (tested on word boundaries by the replacer), possibly
# with spaces ("secret key = x"). A quoted value ends at its closing quote (a double-quoted one may
# span lines, as in .env); an unquoted one runs over words to the end of the line (YAML allows
# spaces), through '\' continuations, and stops at a " #" comment, at ';' and at a word starting
# another assignment ("a=1 password=x"). Every repetition is over disjoint characters: linear.
_SECRET_ASSIGNMENT = re.compile(
    rf"(?<![\w.@-])(?<!REDACTED:)(?P<name>(?=[\w.-]*{_SENSITIVE_WORD})[A-Za-z_$@][\w.-]*+(?:[ \t][A-Za-z][\w.-]*+){{0,2}}?)"
    r"[\"'\]]?[ \t]*(?:=>|:=|[:=])(?![:=/])[ \t]*"
    r"(?:\"(?P<secret_double>(?:[^\"\\]|\\.)*)\""
    r"|'(?P<secret_single>(?:[^'\n]|'')*)'"
    r"|(?P<secret>[^\s#;\"'|>{{\[][^\s;]*(?:[ \t]+(?![\w.-]++[ \t]*(?:=>|[:=]))[^\s#;][^\s;]*)*(?:\\\r?\n[^\n]*)*))"
)
# A secret-named string passed with its value: os.Setenv("API_SECRET", "x"), environ.get('SECRET_KEY', 'x').
_CALL_ARGUMENT = re.compile(
    rf"\([ \t]*(?P<name>[\"'][\w.-]*{_SENSITIVE_WORD}[\w.-]*[\"'])[ \t]*,[ \t]*"
    r"(?:\"(?P<secret_double>(?:[^\"\\\n]|\\.)*)\"|'(?P<secret_single>(?:[^'\\\n]|\\.)*)')"
)
# Password hashes (crypt, htpasswd, PostgreSQL SCRAM and md5): crackable offline, so as secret as the password.
_PASSWORD_HASH = re.compile(
    r"(?P<secret>\$(?:apr1|2[abxy]?|1|5|6|y|argon2id?|argon2i|scrypt|pbkdf2[\w-]*)\$[^\s:\"',;]{8,}"
    r"|SCRAM-SHA-(?:1|256)\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+"
    r"|(?<![A-Za-z0-9])md5[0-9a-f]{32}(?![A-Za-z0-9]))"
)
# XML: <password>value</password>, and key/value attribute pairs (web.config <add key= value=>).
_XML = re.compile(
    rf"<(?P<name>[\w.:-]*{_SENSITIVE_WORD}[\w.:-]*)(?:\s[^>]*)?>(?P<secret>[^<]+)</(?P=name)>"
    rf"|<\w[^>]*?\b(?:key|name)=\"(?P<name_attr>[^\"]*{_SENSITIVE_WORD}[^\"]*)\"[^>]*?\bvalue=\"(?P<secret_attr>[^\"]*)\""
)

DETECTORS: tuple[Detector, ...] = (
    Detector("private_key", _PRIVATE_KEY),
    Detector("putty_private_key", _PUTTY),
    Detector(
        "provider_token",
        re.compile("|".join(f"(?P<secret_{name}>{pattern})" for name, pattern in PROVIDER_FORMATS)),
        per_group=True,
    ),
    Detector(
        "aws_secret_access_key",
        re.compile(
            r"(?i)aws[\w.-]{0,20}(?:secret|sk)[\w.-]{0,20}[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    Detector("url_password", _URL_PASSWORD, accept=lambda secret: re.match(r"[0-9]{1,5}(?:/|$)", secret) is None),
    Detector("authorization", _AUTH_HEADER, accept=lambda secret: not secret.isalpha() or len(secret) >= 20),
    Detector("command_line", _COMMAND_LINE),
    Detector("keyword_value", _KEYWORD_VALUE),
    Detector("password_hash", _PASSWORD_HASH),
    Detector("call_argument", _CALL_ARGUMENT),
    Detector("xml_secret", _XML),
    Detector("block_scalar", _BLOCK_SCALAR),
    Detector("secret_assignment", _SECRET_ASSIGNMENT),
)

# Every detector's match contains one of these (case-insensitively): text without any cannot hold a secret.
_ANCHORS_LOWER = sorted(
    {anchor.lower() for anchor in PROVIDER_ANCHORS}
    | {"-----begin ", "private-lines", "private-mac", "://", "bearer", "mysql", "-u ", "--user", "sshpass",
       "requirepass", "masterauth", "account", "identified", "$apr1$", "$2a$", "$2b$", "$2x$", "$2y$",
       "$2$", "$1$", "$5$", "$6$", "$y$", "$argon2", "$scrypt$", "$pbkdf2", "scram-sha-", "md5", "pw", "<<", "pass", "pwd", "secret", "token", "credential", "creds", "auth", "key",
       "sig", "pin", "otp", "cookie"}
)  # fmt: skip
_ANCHOR = re.compile("|".join(re.escape(anchor) for anchor in sorted(_ANCHORS_LOWER, key=len, reverse=True)))


def may_hold_secret(text: str) -> bool:
    """False when redaction would certainly change nothing in ``text`` (or in a value serialised as ``text``)."""
    return _ANCHOR.search(text.lower()) is not None
