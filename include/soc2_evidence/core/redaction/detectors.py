"""The detectors run over all text, after structured redaction: token formats, key blocks, URLs, headers.

Each detector is a pattern whose ``secret`` group (or ``secret_<alternative>`` groups, since
a group name cannot repeat) is replaced by a marker, and the literal anchors one of which every
match contains. Python's regular expressions try every alternative at every position (about
0.1 MB/s for all provider formats at once), so text is not scanned whole: the anchors are found
with ``str.find`` (C speed), and only the lines around them (:func:`candidate_regions`, extended
over multi-line values) are matched, each by the detectors whose anchors they hold.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import ahocorasick_rs

from soc2_evidence.core.redaction.keys import is_secret_key_name


@dataclass(frozen=True)
class Detector:
    """A pattern whose matched ``secret*`` group is replaced by a marker.

    ``anchors``: every match contains one (in lower case, unless ``cased``), or, for a ``named``
    detector, a name that names a secret (``password``, ``STRIPE_KEY``): a region holding neither
    is not matched. ``accept``: a test the matched secret must pass, for formats a pattern alone
    cannot tell from ordinary words. A ``name`` group must pass the same key-name test as
    structured keys, so text and structured redaction agree on what is a secret.
    """

    name: str
    pattern: re.Pattern[str]
    anchors: tuple[str, ...] = ()
    cased: bool = False
    named: bool = False
    accept: Callable[[str], bool] | None = None
    syntax: tuple[str, ...] = ()  # one of these must be there too, for a match to be possible ("<" for XML)

    def may_match(self, text: str, lowered: str, named: bool) -> bool:
        haystack = text if self.cased else lowered
        return ((self.named and named) or any(anchor in haystack for anchor in self.anchors)) and (
            not self.syntax or any(mark in text for mark in self.syntax)
        )

    @functools.cached_property
    def secret_groups(self) -> tuple[str, ...]:
        return tuple(group for group in self.pattern.groupindex if group.startswith("secret"))

    @functools.cached_property
    def name_groups(self) -> tuple[str, ...]:
        return tuple(group for group in self.pattern.groupindex if group.startswith("name"))


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
# The fixed text in each provider format's match, found before its pattern is tried.
_PROVIDER_ANCHORS: dict[str, tuple[str, ...]] = {
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "gitlab_token": ("glpat-", "gldt-", "glrt-", "glcbt-", "glptt-", "glft-", "glimt-", "gloas-", "glsoat-", "glagent-",
                     "glsa-", "glcc-"),
    "slack_token": ("xox", "xapp-"),
    "slack_webhook": ("hooks.slack.com/",),
    "discord_webhook": ("/api/webhooks/",),
    "teams_webhook": (".webhook.office.com/",),
    "stripe_key": ("_live_", "_test_", "whsec_"),
    "google_api_key": ("AIza",),
    "google_oauth": ("GOCSPX-", "ya29.", "1//0"),
    "aws_access_key_id": ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ABIA", "ACCA", "A3T"),
    "azure_storage_key": ("ccountKey=", "ccountkey=", "ACCOUNTKEY=", "ccessKey=", "ccesskey=", "ACCESSKEY=",
                          "rimaryKey=", "rimarykey=", "PRIMARYKEY="),
    "azure_sas_signature": ("sig=",),
    "azure_client_secret": ("8Q~", "7Q~"),
    "openai_key": ("sk-",),
    "npm_token": ("npm_",),
    "pypi_token": ("pypi-AgE",),
    "sendgrid_key": ("SG.",),
    "twilio_key": ("SK",),
    "mailchimp_key": ("-us",),
    "mailgun_key": ("key-",),
    "square_token": ("sq0", "EAAA"),
    "shopify_token": ("shpat_", "shpca_", "shppa_", "shpss_"),
    "atlassian_token": ("ATATT3", "ATCTT3", "ATOAT"),
    "digitalocean_token": ("_v1_",),
    "vault_token": ("hvs.", "hvb.", "hvr."),
    "terraform_token": (".atlasv1.",),
    "telegram_token": (":AA",),
    "huggingface_token": ("hf_",),
    "databricks_token": ("dapi",),
    "newrelic_key": ("NRAK-", "NRAA-", "NRII-", "NRJS-"),
    "linear_key": ("lin_api_", "lin_oauth_"),
    "postman_key": ("PMAK-",),
    "doppler_token": ("dp.",),
    "age_secret_key": ("AGE-SECRET-KEY-1",),
    "docker_hub_token": ("dckr_pat_",),
    "grafana_token": ("glsa_", "glc_"),
    "pulumi_token": ("pul-",),
    "planetscale_token": ("pscale_",),
    "alibaba_key_id": ("LTAI",),
    "tencent_key_id": ("AKID",),
    "rubygems_key": ("rubygems_",),
    "nuget_key": ("oy2",),
    "artifactory_key": ("AKCp",),
    "easypost_key": ("EZAK", "EZTK"),
    "flutterwave_key": ("FLWSECK", "FLWPUBK"),
    "mapbox_token": ("sk.eyJ",),
    "dynatrace_token": ("dt0c01.",),
    "sentry_token": ("sntrys_", "sntryu_"),
    "jwt": ("eyJ",),
}  # fmt: skip

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
    r"\b(?:mysql|mariadb)\w*\b[^\n]*?\s-p(?P<secret>[^\s-][^\s]*)"
    r"|\b(?:docker|podman|nerdctl|buildah|skopeo|oras|helm)\b[^\n]*?\s(?:-p|--password)[ \t=]+"
    r"(?P<secret_registry>[^\s-]\S*)"
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
    # SQL: CREATE USER ... WITH PASSWORD 'x', ALTER USER ... PASSWORD 'x', SET PASSWORD FOR u = 'x', IDENTIFIED BY 'x'.
    r"|(?i:\bpassword(?:[ \t]+for[ \t]+\S+[ \t]*=)?|\bidentified[ \t]+(?:with[ \t]+\w+[ \t]+)?by)[ \t]+"
    r"'(?P<secret_sql>(?:[^'\n]|'')*)'"
    # CLI setters: aws configure set NAME VALUE, npm config set NAME VALUE, git config NAME VALUE.
    r"|\bconfig(?:ure)?(?::set)?[ \t]+(?:--?\S+[ \t]+)*(?:set[ \t]+)?(?P<name_cli>[\w.:/@-]+)[ \t]+"
    r"(?P<secret_cli>[^\s=-]\S*)"
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
    # A map or list under a sensitive name, in a syntax nothing parsed (HCL, tfvars, JavaScript): all of it
    # (not a {{ template }}, nor a marker).
    r"|(?<![\w.-])(?P<name_brace>[A-Za-z_][\w.-]*)[\"']?[ \t]*[=:][ \t]*"
    r"(?:\{(?!\{)(?P<secret_brace>(?:[^{}]|\{[^{}]*\})*)\}|\[(?!REDACTED:)(?P<secret_list>(?:[^\[\]]|\[[^\[\]]*\])*)\])"
)
# NAME = value, NAME: value, "NAME": "value", NAME => value, NAME := value. The name is a run of
# word characters holding a sensitive word (tested on word boundaries by the replacer), possibly
# with spaces ("secret key = x"). A quoted value ends at its closing quote (a double-quoted one may
# span lines, as in .env); an unquoted one runs over words to the end of the line (YAML allows
# spaces), through '\' continuations, and stops at a " #" comment, at ';' and at a word starting
# another assignment ("a=1 password=x"). Every repetition is over disjoint characters: linear.
_SECRET_ASSIGNMENT = re.compile(
    rf"(?<![\w.@-])(?<!REDACTED:)(?P<name>(?=[\w.-]*{_SENSITIVE_WORD})"
    r"[A-Za-z_$@][\w.-]*+(?:[ \t][A-Za-z][\w.-]*+){0,2}?)"
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
    r"|(?<![A-Za-z0-9])md5[0-9a-f]{32}(?![A-Za-z0-9])"
    # LDAP and htpasswd schemes: {SHA}, {SSHA512}, {CRYPT}, {PBKDF2-SHA256}, ...
    r"|(?i:\{(?:s?sha(?:256|384|512)?|s?md5|crypt|pbkdf2[\w-]*|argon2\w*|bcrypt)\})[A-Za-z0-9+/=$.]{8,})"
)
# XML: <password>value</password>, and key/value attribute pairs (web.config <add key= value=>).
_XML = re.compile(
    rf"<(?P<name>[\w.:-]*{_SENSITIVE_WORD}[\w.:-]*)(?:\s[^>]*)?>(?P<secret>[^<]+)</(?P=name)>"
    rf"|<\w[^>]*?\b(?:key|name)=\"(?P<name_attr>[^\"]*{_SENSITIVE_WORD}[^\"]*)\"[^>]*?\bvalue=\"(?P<secret_attr>[^\"]*)\""
)

# A name that names a secret contains one of these (keys.is_secret_key_name), in lower case.
SENSITIVE_ANCHORS = ("pass", "pwd", "pw", "secret", "token", "credential", "creds", "auth", "key", "sig", "pin", "otp",
                     "cookie")  # fmt: skip
_HASH_ANCHORS = ("$apr1$", "$2a$", "$2b$", "$2x$", "$2y$", "$2$", "$1$", "$5$", "$6$", "$y$", "$argon2", "$scrypt$",
                 "$pbkdf2", "scram-sha-", "md5", "{sha", "{ssha", "{smd5", "{crypt", "{pbkdf2", "{argon2",
                 "{bcrypt")  # fmt: skip

_COMMAND_ANCHORS = ("mysql", "mariadb", "-u ", "--user", "sshpass", "docker", "podman", "nerdctl", "buildah", "skopeo",
                    "oras", "helm")  # fmt: skip

DETECTORS: tuple[Detector, ...] = (
    Detector("private_key", _PRIVATE_KEY, ("-----BEGIN ",), cased=True),
    Detector("putty_private_key", _PUTTY, ("Private-Lines", "Private-MAC"), cased=True),
    *(
        Detector(name, re.compile(f"(?P<secret>{pattern})"), _PROVIDER_ANCHORS[name], cased=True)
        for name, pattern in PROVIDER_FORMATS
    ),
    Detector(
        "aws_secret_access_key",
        re.compile(
            r"(?i)aws[\w.-]{0,20}(?:secret|sk)[\w.-]{0,20}[\"']?(?:\s*[:=]\s*|[ \t]+)[\"']?"
            r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        ("aws_sk", "awssk", "aws-sk"),
        named=True,
        syntax=("aws", "AWS", "Aws"),
    ),
    Detector(
        "url_password", _URL_PASSWORD, ("://",), accept=lambda secret: re.match(r"[0-9]{1,5}(?:/|$)", secret) is None
    ),
    Detector(
        "authorization",
        _AUTH_HEADER,
        ("bearer",),
        named=True,
        accept=lambda secret: not secret.isalpha() or len(secret) >= 20,
    ),
    Detector("command_line", _COMMAND_LINE, _COMMAND_ANCHORS, named=True, syntax=("-",)),
    Detector("keyword_value", _KEYWORD_VALUE, ("identified", "password"), named=True),
    Detector("password_hash", _PASSWORD_HASH, _HASH_ANCHORS),
    Detector("call_argument", _CALL_ARGUMENT, named=True, syntax=("(",)),
    Detector("xml_secret", _XML, named=True, syntax=("<",)),
    Detector("block_scalar", _BLOCK_SCALAR, named=True, syntax=("|", ">", "<<", "{", "[")),
    Detector("secret_assignment", _SECRET_ASSIGNMENT, named=True),
)
_LOWER_ANCHORS = tuple(
    sorted(
        {*SENSITIVE_ANCHORS, *(anchor for detector in DETECTORS if not detector.cased for anchor in detector.anchors)}
    )
)
_CASED_ANCHORS = tuple(sorted({anchor for detector in DETECTORS if detector.cased for anchor in detector.anchors}))
# All anchors found in one pass over the text (Aho-Corasick): a hundred `in` tests would scan it a hundred times.
_LOWER_SEARCH = ahocorasick_rs.AhoCorasick(list(_LOWER_ANCHORS))
_CASED_SEARCH = ahocorasick_rs.AhoCorasick(list(_CASED_ANCHORS))
_SENSITIVE = frozenset(_LOWER_ANCHORS.index(anchor) for anchor in SENSITIVE_ANCHORS)
_NAME_BEFORE = re.compile(r"[\w.$@-]*\Z")
_NAME_AFTER = re.compile(r"[\w.$@-]*")


def may_hold_secret(text: str) -> bool:
    """False when redaction would certainly change nothing in ``text`` (or in a value serialised as ``text``).

    A cheap superset: any sensitive word, not only one in a secret name. JSON escaping never
    removes one, so the check also holds for a value's canonical JSON.
    """
    return bool(_LOWER_SEARCH.find_matches_as_indexes(text.lower()) or _CASED_SEARCH.find_matches_as_indexes(text))


@dataclass(frozen=True)
class Candidates:
    """Where in a text detectors may match (``regions``: start, end, holds a secret name) and which may."""

    regions: list[tuple[int, int, bool]]
    detectors: list[Detector]


def candidates(text: str) -> Candidates:
    """The spans of ``text`` every detector match lies in, whether each holds a secret name, and the
    detectors whose anchors the text holds.

    A span is a line holding an anchor, or a name that names a secret (found around each sensitive
    word: ``token_ttl_seconds`` is not one, so its line is skipped), extended over the values that
    continue on later lines (key blocks, block scalars, heredocs, quoted and continued values);
    touching spans are merged.
    """
    lowered = text.lower()
    if len(lowered) != len(text):  # lowering changed the length (rare non-ASCII): positions would not agree
        return Candidates([(0, len(text), True)], list(DETECTORS))
    lines: dict[int, bool] = {}  # line start -> holds a secret name
    found: set[str] = set()
    for anchor, position, _ in _LOWER_SEARCH.find_matches_as_indexes(lowered, overlapping=True):
        found.add(_LOWER_ANCHORS[anchor])
        line = text.rfind("\n", 0, position) + 1
        if anchor in _SENSITIVE and not lines.get(line):
            start = _NAME_BEFORE.search(text, max(position - 80, line), position).start()
            lines[line] = is_secret_key_name(text[start : _NAME_AFTER.match(text, position).end()])
        else:
            lines.setdefault(line, False)
    for anchor, position, _ in _CASED_SEARCH.find_matches_as_indexes(text, overlapping=True):
        found.add(_CASED_ANCHORS[anchor])
        lines.setdefault(text.rfind("\n", 0, position) + 1, False)
    regions: list[tuple[int, int, bool]] = []
    for start in sorted(lines):
        end = _extend(text, start)
        if regions and start <= regions[-1][1] + 1:
            previous_start, previous_end, named = regions[-1]
            regions[-1] = (previous_start, max(previous_end, end), named or lines[start])
        else:
            regions.append((start, end, lines[start]))
    named = any(lines.values())
    detectors = [
        detector for detector in DETECTORS if (detector.named and named) or not found.isdisjoint(detector.anchors)
    ]
    return Candidates(regions, detectors)


_BLOCK_START = re.compile(r"[:=][ \t]*(?:[|>][+-]?[0-9]?|<<[-~]?[\"']?(?P<tag>[A-Za-z_]\w*)[\"']?)[ \t]*$")
_MAX_CONTINUED_LINES = 1000


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _extend(text: str, start: int) -> int:
    """The end of the region starting at the line at ``start``: that line, and the lines its value continues on."""
    end = _line_end(text, start)
    line = text[start:end]
    if "-----BEGIN " in line or "Private-Lines" in line:  # to the key's END line (or the text's end)
        closing = text.find("-----END " if "-----BEGIN " in line else "Private-MAC", end)
        return len(text) if closing < 0 else _line_end(text, closing)
    block = _BLOCK_START.search(line)
    if block and block["tag"]:  # heredoc: to the terminator line
        terminator = re.compile(rf"(?m)^[ \t]*{re.escape(block['tag'])}[ \t]*$")
        found = terminator.search(text, end)
        return len(text) if found is None else found.end()
    if block:  # block scalar: the blank and more indented lines below
        indent = len(line) - len(line.lstrip(" \t"))
        for _ in range(_MAX_CONTINUED_LINES):
            if end >= len(text):
                break
            following_end = _line_end(text, end + 1)
            following = text[end + 1 : following_end]
            if following.strip() and len(following) - len(following.lstrip(" \t")) <= indent:
                break
            end = following_end
        return end
    opening = line.split(" #")[0].rstrip()[-1:]
    if opening in ("{", "["):  # a map or list: to the line that closes it
        closing, depth = "}" if opening == "{" else "]", 0
        for _ in range(_MAX_CONTINUED_LINES):
            depth += line.count(opening) - line.count(closing)
            if depth <= 0 or end >= len(text):
                break
            following_end = _line_end(text, end + 1)
            line, end = text[end + 1 : following_end], following_end
        return end
    for _ in range(_MAX_CONTINUED_LINES):  # a backslash continuation, or a double quote left open
        if end >= len(text) or not (line.endswith("\\") or line.count('"') % 2 == 1):
            break
        following_end = _line_end(text, end + 1)
        line = line + text[end + 1 : following_end] if line.count('"') % 2 == 1 else text[end + 1 : following_end]
        end = following_end
    return end
