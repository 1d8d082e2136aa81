"""A corpus of fake secrets in realistic formats, and of look-alike values that are not secrets.

Secret values are generated from a seeded random source when the module loads: realistic in
shape and length, never the same as a live key, and never committed as text that a push
protection scanner would flag. Each case is one file of a configuration repository.

``SECRETS``: cases whose ``secrets`` must appear nowhere in what a collector run writes.
``LOOKALIKES``: cases whose ``kept`` values must survive redaction, as an auditor needs them.
``SUBJECT_SECRETS`` go in the snapshot commit's subject; ``NAME_SECRETS`` are short strings
(file names, ticket titles, PR bodies) for ``Redactor.redact_text``.
"""

# ruff: noqa: E501 - one case a line: a corpus reads best as the files it stands for

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

_rng = random.Random(20261202)
ALNUM = string.ascii_letters + string.digits
LOWER_HEX = "0123456789abcdef"
UPPER_ALNUM = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def r(length: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(length))


def password() -> str:
    """A human-ish password with symbols, as operators choose them."""
    return r(6) + _rng.choice("!%^*+") + r(5) + _rng.choice("#$~") + r(3)  # no '&' or '<': XML needs them escaped


def key_body(lines: int = 6) -> list[str]:
    return [r(64, B64) for _ in range(lines)]


def pem(label: str, body: list[str], indent: str = "") -> str:
    return "\n".join(f"{indent}{line}" for line in [f"-----BEGIN {label}-----", *body, f"-----END {label}-----"])


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    content: str
    secrets: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()


def _jwt() -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps({"sub": r(12), "iat": 1764633600}).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{r(43, URLSAFE)}"


def _secret_cases() -> list[Case]:
    cases: list[Case] = []

    def add(case_id: str, path: str, template: str, *secrets: str, kept: tuple[str, ...] = ()) -> None:
        cases.append(Case(case_id, path, template.format(*secrets), tuple(secrets), kept))

    # --- provider token formats, under keys that do not name a secret, so only the format finds them
    add("github-ghp-yaml", "ci/github.yaml", "ci:\n  github: {}\n  org: acme\n", "ghp_" + r(36), kept=("org: acme",))
    add("github-gho-json", "ci/oauth.json", '{{"handle": "{}", "org": "acme"}}\n', "gho_" + r(36))
    add("github-ghu-env", "ci/app.env", "GH_USER_TO_SERVER={}\nREGION=eu\n", "ghu_" + r(36), kept=("REGION=eu",))
    add("github-ghs-ini", "ci/actions.ini", "[app]\ninstall = {}\n", "ghs_" + r(36))
    add("github-ghr-toml", "ci/refresh.toml", 'refresh = "{}"\n', "ghr_" + r(76))
    add("github-fine-grained", "ci/pat.txt", "use {} for the release job\n", "github_pat_" + r(22) + "_" + r(59))
    add("github-url-user", "ci/remote.txt", "https://{}@github.com/acme/infra.git\n", "ghp_" + r(36))
    add(
        "github-token-header",
        "ci/call.sh",
        'curl -H "Authorization: token {}" https://api.github.com/user\n',
        "ghp_" + r(36),
    )
    add("gitlab-pat", "ci/gitlab.yaml", "gitlab:\n  personal: {}\n", "glpat-" + r(20, URLSAFE))
    add("gitlab-runner", "ci/runner.toml", '[[runners]]\n  registration = "{}"\n', "glrt-" + r(24, URLSAFE))
    add(
        "slack-bot",
        "notify/slack.yaml",
        "slack:\n  bot: {}\n",
        f"xoxb-{r(11, string.digits)}-{r(12, string.digits)}-{r(24)}",
    )
    add(
        "slack-user",
        "notify/slack-user.json",
        '{{"user": "{}"}}\n',
        f"xoxp-{r(11, string.digits)}-{r(11, string.digits)}-{r(12, string.digits)}-{r(32, LOWER_HEX)}",
    )
    add(
        "slack-webhook",
        "notify/hooks.json",
        '{{"alerts": "https://hooks.slack.com/services/{}"}}\n',
        f"T{r(8, UPPER_ALNUM)}/B{r(10, UPPER_ALNUM)}/{r(24)}",
    )
    add(
        "discord-webhook",
        "notify/discord.yaml",
        "discord: https://discord.com/api/webhooks/{}\n",
        f"{r(18, string.digits)}/{r(68, URLSAFE)}",
    )
    add(
        "teams-webhook",
        "notify/teams.txt",
        "https://acme.webhook.office.com/webhookb2/{}\n",
        f"{r(8, LOWER_HEX)}-{r(4, LOWER_HEX)}@{r(8, LOWER_HEX)}/IncomingWebhook/{r(32, LOWER_HEX)}",
    )
    add("stripe-live-under-STRIPE_KEY", "billing/.env.production", "STRIPE_KEY={}\n", "sk_live_" + r(99))
    add("stripe-restricted", "billing/stripe.yaml", "stripe:\n  reporting: {}\n", "rk_live_" + r(24))
    add("stripe-webhook-secret", "billing/hooks.yaml", "endpoint_signing: {}\n", "whsec_" + r(32))
    add("google-api-key", "web/maps.js", 'const maps = new Maps({{ client: "{}" }});\n', "AIza" + r(35, URLSAFE))
    add(
        "google-oauth-client-secret",
        "web/oauth.json",
        '{{"web": {{"client_id": "1234.apps.googleusercontent.com", "cs": "{}"}}}}\n',
        "GOCSPX-" + r(28, URLSAFE),
    )
    add("google-access-token", "web/token.txt", "ya29.{}\n", "a0" + r(150, URLSAFE))
    add("aws-access-key-id", "aws/ids.yaml", "deploy_user: {}\n", "AKIA" + r(16, UPPER_ALNUM))
    add("aws-sts-key-id", "aws/sts.json", '{{"Id": "{}"}}\n', "ASIA" + r(16, UPPER_ALNUM))
    add(
        "aws-credentials-file",
        "aws/credentials",
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        "AKIA" + r(16, UPPER_ALNUM),
        r(40, B64),
    )
    add(
        "azure-storage-connection",
        "azure/storage.config.txt",
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={};EndpointSuffix=core.windows.net\n",
        r(86, B64) + "==",
    )
    add(
        "azure-sas-url",
        "azure/sas.yaml",
        "backup_target: https://acme.blob.core.windows.net/backups?sv=2022-11-02&ss=b&sp=rl&se=2027-01-01&sig={}\n",
        r(43, B64) + "%3D",
    )
    add("azure-client-secret", "azure/app.yaml", "azure:\n  app: {}\n", r(3, URLSAFE) + "8Q~" + r(34, URLSAFE))
    add(
        "azure-servicebus",
        "azure/bus.txt",
        "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={}\n",
        r(43, B64) + "=",
    )
    add("openai-project-key", "ml/openai.yaml", "provider: openai\nkey_material: {}\n", "sk-proj-" + r(48, URLSAFE))
    add("anthropic-key", "ml/anthropic.env", "LLM={}\n", "sk-ant-api03-" + r(93, URLSAFE) + "AA")
    add("npm-token", "js/ci.yaml", "publish: {}\n", "npm_" + r(36))
    add(
        "npmrc-auth-token",
        "js/.npmrc",
        "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={}\n",
        f"{r(8, LOWER_HEX)}-{r(4, LOWER_HEX)}-{r(4, LOWER_HEX)}-{r(4, LOWER_HEX)}-{r(12, LOWER_HEX)}",
        kept=("registry=https://registry.npmjs.org/",),
    )
    add(
        "npmrc-legacy-auth",
        "js/legacy/.npmrc",
        "_auth={}\nemail=ci@acme.example\n",
        base64.b64encode(f"ci:{password()}".encode()).decode(),
    )
    add("pypi-token", "py/upload.txt", "token for upload: {}\n", "pypi-AgEIcHlwaS5vcmc" + r(60, URLSAFE))
    add(
        "pypirc",
        "py/.pypirc",
        "[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\npassword = {}\n",
        password(),
    )
    add("sendgrid", "mail/sendgrid.yaml", "sendgrid: {}\n", f"SG.{r(22, URLSAFE)}.{r(43, URLSAFE)}")
    add("twilio-api-key", "mail/twilio.json", '{{"sid": "{}"}}\n', "SK" + r(32, LOWER_HEX))
    add("mailchimp", "mail/mailchimp.ini", "[mc]\nkey_for_list = {}\n", r(32, LOWER_HEX) + "-us14")
    add("mailgun", "mail/mailgun.env", "MG={}\n", "key-" + r(32, LOWER_HEX))
    add("square", "pay/square.yaml", "square: {}\n", "sq0atp-" + r(22, URLSAFE))
    add("shopify", "pay/shopify.yaml", "shop: {}\n", "shpat_" + r(32, LOWER_HEX))
    add("atlassian", "ops/jira.yaml", "jira_api: {}\n", "ATATT3xFfGF0" + r(180, URLSAFE) + "=" + r(8, UPPER_ALNUM))
    add("digitalocean", "ops/do.tfvars", 'do = "{}"\n', "dop_v1_" + r(64, LOWER_HEX))
    add("vault", "ops/vault.hcl", 'vault_login = "{}"\n', "hvs." + r(90, URLSAFE))
    add(
        "terraform-cloud",
        "ops/.terraformrc",
        'credentials "app.terraform.io" {{\n  value = "{}"\n}}\n',
        r(14) + ".atlasv1." + r(67, URLSAFE),
    )
    add("telegram", "ops/bot.yaml", "bot: {}\n", f"{r(10, string.digits)}:AA{r(33, URLSAFE)}")
    add("huggingface", "ml/hf.txt", "{}\n", "hf_" + r(34))
    add(
        "databricks",
        "ml/databricks.cfg",
        "[DEFAULT]\nhost = https://acme.cloud.databricks.com\npat = {}\n",
        "dapi" + r(32, LOWER_HEX),
    )
    add("newrelic", "ops/newrelic.yml", "nr_user: {}\n", "NRAK-" + r(27, UPPER_ALNUM))
    add("linear", "ops/linear.json", '{{"linear": "{}"}}\n', "lin_api_" + r(40))
    add("postman", "ops/postman.env", "PM={}\n", f"PMAK-{r(24, LOWER_HEX)}-{r(34, LOWER_HEX)}")
    add("doppler", "ops/doppler.yaml", "doppler: {}\n", "dp.st.prd." + r(40))
    add("age-key", "ops/age.txt", "# created: 2026-01-01\n{}\n", "AGE-SECRET-KEY-1" + r(58, UPPER_ALNUM))
    add("docker-hub-pat", "ops/dockerhub.txt", "login with {}\n", "dckr_pat_" + r(27, URLSAFE))
    add("grafana-service-account", "ops/grafana.yaml", "grafana: {}\n", f"glsa_{r(32)}_{r(8, LOWER_HEX)}")
    add("pulumi", "ops/pulumi.yaml", "pulumi: {}\n", "pul-" + r(40, LOWER_HEX))
    add("planetscale", "ops/pscale.env", "PS={}\n", "pscale_pw_" + r(43, URLSAFE))
    add("alibaba", "cloud/aliyun.yaml", "aliyun_id: {}\n", "LTAI" + r(20))
    add("rubygems", "rb/gem.yaml", "gem_host: {}\n", "rubygems_" + r(48, LOWER_HEX))
    add("nuget", "dotnet/nuget.txt", "{}\n", "oy2" + r(43, string.ascii_lowercase + string.digits))
    add("sentry-org-token", "ops/sentry.env", "SENTRY={}\n", "sntrys_" + r(60, URLSAFE))
    add("mapbox-secret", "web/mapbox.js", 'mapboxgl.setup("{}");\n', "sk.eyJ1Ijoi" + r(20) + "." + r(22, URLSAFE))
    add("dynatrace", "ops/dt.yaml", "dt: {}\n", f"dt0c01.{r(24, UPPER_ALNUM)}.{r(64, UPPER_ALNUM)}")
    add("jwt-bare", "web/session.txt", "session = {}\n", _jwt())

    # --- private keys of every kind
    add("pem-rsa", "keys/rsa.pem", pem("RSA PRIVATE KEY", ["{}", "{}"]) + "\n", *key_body(2))
    add("pem-pkcs8", "keys/pkcs8.key", pem("PRIVATE KEY", ["{}", "{}"]) + "\n", *key_body(2))
    add("pem-ec", "keys/ec.pem", pem("EC PRIVATE KEY", ["{}"]) + "\n", *key_body(1))
    add("pem-dsa", "keys/dsa.pem", pem("DSA PRIVATE KEY", ["{}"]) + "\n", *key_body(1))
    add("pem-encrypted", "keys/enc.pem", pem("ENCRYPTED PRIVATE KEY", ["{}", "{}"]) + "\n", *key_body(2))
    add("openssh", "keys/id_ed25519", pem("OPENSSH PRIVATE KEY", ["{}", "{}"]) + "\n", *key_body(2))
    add(
        "pgp-private-block",
        "keys/signing.asc",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nComment: release\n\n{}\n{}\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----\n",
        *key_body(2),
    )
    add(
        "putty-ppk",
        "keys/deploy.ppk",
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\nPublic-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIBn\nxk2\nPrivate-Lines: 1\n{}\nPrivate-MAC: {}\n",
        r(44, B64),
        r(64, LOWER_HEX),
    )
    add(
        "pem-in-yaml-block",
        "keys/tls.yaml",
        "tls:\n  cert_file: /etc/tls/cert.pem\n  key: |\n" + pem("RSA PRIVATE KEY", ["{}", "{}"], indent="    ") + "\n",
        *key_body(2),
    )
    add(
        "pem-in-json-escaped",
        "keys/service-account.json",
        '{{"type": "service_account", "project_id": "acme", "private_key": "-----BEGIN PRIVATE KEY-----\\n{}\\n{}\\n-----END PRIVATE KEY-----\\n", "client_email": "sa@acme.iam.gserviceaccount.com"}}\n',
        *key_body(2),
        kept=('"project_id": "acme"',),
    )
    add("pem-truncated", "keys/half.pem", "-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n", *key_body(2))

    # --- credentials in URLs, with any characters
    add("url-postgres", "db/app.yaml", "database:\n  url: postgresql://app:{}@db.internal:5432/app\n", password())
    add(
        "url-password-with-slash",
        "db/slash.yaml",
        "dsn: postgres://app:{}@db:5432/app\n",
        r(8) + "/" + r(8) + "/" + r(4),
    )
    add("url-password-with-at", "db/at.yaml", "dsn: mysql://app:{}@db:3306/app\n", r(7) + "@" + r(9))
    add("url-redis-no-user", "cache/redis.yaml", "cache: redis://:{}@cache:6379/0\n", r(24))
    add(
        "url-mongodb-srv",
        "db/mongo.env",
        "MONGO=mongodb+srv://svc:{}@cluster0.abcd.mongodb.net/?retryWrites=true\n",
        password(),
    )
    add(
        "url-amqp-in-json",
        "mq/broker.json",
        '{{"broker": "amqps://user:{}@mq.internal:5671/vhost", "prefetch": 10}}\n',
        password(),
        kept=('"prefetch": 10',),
    )
    add(
        "url-jdbc-query-password",
        "db/jdbc.properties",
        "jdbc.url=jdbc:mysql://db:3306/app?user=app&password={}&useSSL=true\n",
        r(16),
    )
    add("url-ftp", "ops/mirror.txt", "mirror ftp://mirror:{}@ftp.acme.example/pub\n", password())

    # --- authorization headers
    add("bearer-jwt", "http/call.http", "GET https://api.acme.example/v1/me\nAuthorization: Bearer {}\n", _jwt())
    add("bearer-opaque", "http/nginx.conf", 'proxy_set_header Authorization "Bearer {}";\n', r(40, URLSAFE))
    add(
        "basic-header",
        "http/basic.http",
        "Authorization: Basic {}\n",
        base64.b64encode(f"admin:{password()}".encode()).decode(),
    )
    add(
        "proxy-authorization",
        "http/proxy.txt",
        "Proxy-Authorization: Basic {}\n",
        base64.b64encode(f"proxy:{password()}".encode()).decode(),
    )
    add("x-api-key-header", "http/apikey.http", "GET /v1/items\nX-API-Key: {}\n", r(32))
    add(
        "headers-in-yaml",
        "http/client.yaml",
        "headers:\n  Authorization: Bearer {}\n  Accept: application/json\n",
        r(48, URLSAFE),
        kept=("Accept: application/json",),
    )

    # --- structured: values under sensitive keys, nested, multi-line, odd spellings
    add(
        "yaml-block-scalar",
        "app/block.yaml",
        "service: api\nsecret: |\n  {}\n  {}\nnext: kept-value\n",
        r(30),
        r(30),
        kept=("next: kept-value",),
    )
    add(
        "yaml-folded-scalar",
        "app/folded.yaml",
        "signing_secret: >-\n  {}\n  {}\nmode: strict\n",
        r(20),
        r(20),
        kept=("mode: strict",),
    )
    add(
        "yaml-credentials-map",
        "app/creds.yaml",
        "credentials:\n  prod: {}\n  staging: {}\n  dev: {}\nregion: eu-west-1\n",
        password(),
        password(),
        password(),
        kept=("region: eu-west-1",),
    )
    add("yaml-password-list", "app/list.yaml", "passwords:\n  - {}\n  - {}\n", password(), password())
    add(
        "yaml-cloudformation-tags",
        "app/stack.yaml",
        "Resources:\n  Db:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      MasterUserPassword: {}\n      Engine: !Ref Engine\n",
        password(),
        kept=("Engine: !Ref Engine",),
    )
    add("yaml-helm-values", "app/values.yaml", "auth:\n  rootPassword: {}\n  database: app\n", password())
    add("yaml-quoted-comma", "app/quoted.yaml", 'db_password: "{}"\n', r(6) + ", " + r(6))
    add(
        "k8s-secret-data",
        "k8s/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-tls\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        base64.b64encode(r(60).encode()).decode(),
        base64.b64encode(r(60).encode()).decode(),
        kept=("name: web-tls",),
    )
    add(
        "k8s-dockerconfigjson",
        "k8s/pull.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        base64.b64encode(json.dumps({"auths": {"ghcr.io": {"auth": r(40)}}}).encode()).decode(),
    )
    add(
        "k8s-stringdata",
        "k8s/app-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  username: svc-app\n  connection: {}\n",
        r(28),
    )
    add(
        "docker-config-auth",
        "docker/config.json",
        '{{\n  "auths": {{\n    "registry.acme.example": {{\n      "auth": "{}"\n    }},\n    "ghcr.io": {{"identitytoken": "{}"}}\n  }}\n}}\n',
        base64.b64encode(f"ci:{password()}".encode()).decode(),
        r(40),
    )
    add(
        "json-nested-objects",
        "app/nested.json",
        '{{"db": {{"credentials": {{"user": "app", "pass": "{}"}}}}, "pool": 5}}\n',
        password(),
        kept=('"pool": 5',),
    )
    add(
        "json-apiKey-camel",
        "app/client.json",
        '{{"apiKey": "{}", "timeoutMs": 500}}\n',
        r(32),
        kept=('"timeoutMs": 500',),
    )
    add(
        "toml-section",
        "app/config.toml",
        '[database]\nhost = "db"\npassword = "{}"\n',
        password(),
        kept=('host = "db"',),
    )
    add("toml-multiline-string", "app/multi.toml", 'client_secret = """\n{}\n{}"""\n', r(24), r(24))
    add(
        "ini-continuation",
        "app/setup.cfg",
        "[auth]\nsecret =\n    {}\n    {}\nlevel = 2\n",
        r(20),
        r(20),
        kept=("level = 2",),
    )
    add(
        "env-multiline-quoted",
        "app/.env",
        'export DB_PASSWORD="{}"\nSIGNING_KEY="{}\n{}"\nLOG=info\n',
        password(),
        r(30),
        r(30),
        kept=("LOG=info",),
    )
    add("env-unquoted-comma", "app/comma.env", "APP_SECRET={}\n", r(8) + "," + r(8))
    add(
        "properties-continued",
        "app/app.properties",
        "spring.datasource.password={}\\\n    {}\nserver.port=8080\n",
        r(12),
        r(12),
        kept=("server.port=8080",),
    )
    add("properties-colon", "app/mail.properties", "mail.smtp.password : {}\n", password())
    add(
        "xml-password-element",
        "app/settings.xml",
        "<settings><servers><server><id>central</id><username>ci</username><password>{}</password></server></servers></settings>\n",
        password(),
        kept=("<id>central</id>",),
    )
    add(
        "xml-web-config-add",
        "app/web.config",
        '<?xml version="1.0"?>\n<configuration><appSettings><add key="DbPassword" value="{}" /><add key="Theme" value="dark" /></appSettings></configuration>\n',
        password(),
        kept=('value="dark"',),
    )
    add(
        "xml-connection-string",
        "app/conn.config",
        '<configuration><connectionStrings><add name="Main" connectionString="Server=db;Database=app;User Id=app;Password={};" /></connectionStrings></configuration>\n',
        r(16),
    )
    add("xml-property-name-value", "app/beans.xml", '<beans><property name="api.key" value="{}"/></beans>\n', r(32))
    add("netrc-multiline", "home/.netrc", "machine api.acme.example\n  login ci\n  password {}\n", password())
    add("netrc-one-line", "home/netrc.txt", "machine git.acme.example login deploy password {}\n", password())
    add("pgpass", "home/.pgpass", "db.internal:5432:app:app:{}\n", password())
    add(
        "tfvars",
        "infra/prod.tfvars",
        'region      = "eu-west-1"\ndb_password = "{}"\n',
        password(),
        kept=('region      = "eu-west-1"',),
    )
    add(
        "dockerfile-env-space",
        "docker/Dockerfile",
        "FROM python:3.12\nENV API_KEY {}\nENV PORT 8080\n",
        r(32),
        kept=("ENV PORT 8080",),
    )
    add(
        "dockerfile-env-equals",
        "docker/api.Dockerfile",
        "FROM node:22\nENV DB_PASSWORD={} NODE_ENV=production\n",
        password(),
    )
    add("dockerfile-arg", "docker/build.Dockerfile", "ARG NPM_TOKEN={}\n", r(36))
    add(
        "redis-requirepass",
        "cache/redis.conf",
        "port 6379\nrequirepass {}\nmasterauth {}\n",
        password(),
        password(),
        kept=("port 6379",),
    )
    add("key-API.KEY", "app/dots.properties", "API.KEY={}\n", r(32))
    add("key-access-key", "app/kebab.yaml", "access-key: {}\n", r(32))
    add("key-auth", "app/auth.yaml", "registry:\n  auth: {}\n", base64.b64encode(f"bot:{password()}".encode()).decode())
    add("key-secret-space-key", "app/spaces.conf", "secret key = {}\n", r(24))
    add("key-ClientSecret", "app/oidc.json", '{{"ClientSecret": "{}"}}\n', r(40))
    add("php-array", "app/config.php", "<?php return ['db' => ['password' => '{}']];\n", password())
    add("ruby-symbol", "app/database.rb", 'connect(:password => "{}")\n', password())
    add("go-struct", "app/main.go", 'cfg := Config{{Password: "{}", Host: "db"}}\n', password())
    add("python-setting", "app/settings.py", "SECRET_KEY = '{}'\nDEBUG = False\n", r(50), kept=("DEBUG = False",))
    add("sql-create-user", "db/init.sql", "CREATE USER app WITH PASSWORD '{}';\n", password())
    add("sql-identified-by", "db/mysql.sql", "CREATE USER 'app'@'%' IDENTIFIED BY '{}';\n", password())

    # --- command lines
    add("mysql-p", "scripts/backup.sh", "mysqldump -uroot -p{} app > app.sql\n", password())
    add("password-option-space", "scripts/load.sh", "loader --password {} --host db\n", password())
    add("password-option-equals", "scripts/sync.sh", "sync --api-token={} --dry-run\n", r(32))
    add("curl-user", "scripts/curl.sh", "curl -u admin:{} https://ci.acme.example/api\n", password())
    add("sshpass", "scripts/ssh.sh", "sshpass -p {} ssh deploy@host\n", password())
    add("pgpassword-env", "scripts/psql.sh", "PGPASSWORD={} psql -h db -U app\n", password())

    # --- held out: written after the detectors above were settled, and first measured unseen (README)
    add("ansible-vars", "held-out/group_vars/all.yml", "ansible_become_pass: {}\n", password())
    add(
        "ansible-ssh-pass",
        "held-out/inventory.ini",
        "[web]\nweb1 ansible_host=10.0.0.1 ansible_ssh_pass={}\n",
        password(),
    )
    add(
        "spring-yaml-nested",
        "held-out/application.yml",
        "spring:\n  datasource:\n    username: app\n    password: {}\n",
        password(),
    )
    add(
        "django-databases",
        "held-out/settings.py",
        "DATABASES = {{'default': {{'ENGINE': 'x', 'PASSWORD': '{}'}}}}\n",
        password(),
    )
    add("nodejs-config", "held-out/config.js", "module.exports = {{ db: {{ password: '{}' }} }};\n", password())
    add("ts-const", "held-out/secrets.ts", 'export const STRIPE_SECRET = "{}";\n', "sk_test_" + r(24))
    add("java-string", "held-out/Conf.java", 'private static final String DB_PASS = "{}";\n', password())
    add(
        "csharp-conn",
        "held-out/appsettings.json",
        '{{"ConnectionStrings": {{"Default": "Server=db;Database=app;User Id=sa;Password={};"}}}}\n',
        r(14),
    )
    add(
        "docker-compose-env",
        "held-out/docker-compose.yml",
        "services:\n  db:\n    environment:\n      - POSTGRES_PASSWORD={}\n",
        password(),
    )
    add(
        "compose-map-env",
        "held-out/compose.yaml",
        "services:\n  db:\n    environment:\n      MYSQL_ROOT_PASSWORD: {}\n",
        password(),
    )
    add("gh-actions-with", "held-out/workflow.yml", "steps:\n  - uses: x/y@v1\n    with:\n      api-token: {}\n", r(40))
    add("helm-set", "held-out/deploy.sh", "helm upgrade app . --set auth.password={}\n", password())
    add(
        "kubectl-literal", "held-out/mk.sh", "kubectl create secret generic db --from-literal=password={}\n", password()
    )
    add("terraform-tf", "held-out/main.tf", 'resource "aws_db_instance" "db" {{\n  password = "{}"\n}}\n', password())
    add("hcl-heredoc", "held-out/vault.hcl", "token = <<EOT\n{}\nEOT\n", r(40))
    add("nginx-auth-basic", "held-out/htpasswd", "admin:{}\n", "$apr1$" + r(8) + "$" + r(22))
    add("ssh-config-pass", "held-out/ssh_config", "Host x\n  IdentityFile ~/.ssh/id\n  # pass: {}\n", password())
    add("git-credentials", "held-out/.git-credentials", "https://ci:{}@github.com\n", password())
    add("pip-conf", "held-out/pip.conf", "[global]\nindex-url = https://user:{}@pypi.acme.example/simple\n", password())
    add(
        "maven-settings-env",
        "held-out/settings-ci.xml",
        "<settings><servers><server><id>x</id><privateKey>{}</privateKey><passphrase>{}</passphrase></server></servers></settings>\n",
        r(30),
        r(16),
    )
    add(
        "gradle-properties",
        "held-out/gradle.properties",
        "signing.password={}\nossrhPassword={}\n",
        password(),
        password(),
    )
    add("cargo-credentials", "held-out/credentials.toml", '[registry]\ntoken = "{}"\n', "cio" + r(32))
    add("composer-auth", "held-out/auth.json", '{{"github-oauth": {{"github.com": "{}"}}}}\n', "ghp_" + r(36))
    add(
        "rclone",
        "held-out/rclone.conf",
        "[s3]\ntype = s3\naccess_key_id = {}\nsecret_access_key = {}\n",
        "AKIA" + r(16, UPPER_ALNUM),
        r(40, B64),
    )
    add(
        "s3cmd",
        "held-out/.s3cfg",
        "[default]\naccess_key = {}\nsecret_key = {}\n",
        "AKIA" + r(16, UPPER_ALNUM),
        r(40, B64),
    )
    add("boto-cfg", "held-out/.boto", "[Credentials]\naws_secret_access_key = {}\n", r(40, B64))
    add("kubeconfig-token", "held-out/kubeconfig", "users:\n- name: admin\n  user:\n    token: {}\n", r(60, URLSAFE))
    add(
        "kubeconfig-client-key",
        "held-out/kube.yaml",
        "users:\n- name: a\n  user:\n    client-key-data: {}\n",
        base64.b64encode(r(90).encode()).decode(),
    )
    add(
        "argo-repo-secret",
        "held-out/argocd.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: repo\nstringData:\n  url: https://github.com/a/b\n  sshPrivateKey: {}\n",
        r(50),
    )
    add("sealed-like-plain", "held-out/vault.json", '{{"data": {{"value": "{}", "key": "db_password"}}}}\n', password())
    add("aws-tags", "held-out/tags.json", '[{{"Key": "DbPassword", "Value": "{}"}}]\n', password())
    add(
        "jupyter",
        "held-out/notebook.ipynb",
        '{{"cells": [{{"source": ["openai.api_key = \\"{}\\"\\n"]}}]}}\n',
        "sk-" + r(48),
    )
    add(
        "powershell", "held-out/deploy.ps1", '$password = ConvertTo-SecureString "{}" -AsPlainText -Force\n', password()
    )
    add("bash-read", "held-out/env.sh", 'export VAULT_TOKEN="{}"\n', "hvs." + r(90, URLSAFE))
    add("go-env", "held-out/main_test.go", 'os.Setenv("API_SECRET", "{}")\n', r(32))
    add("python-environ-default", "held-out/conf.py", "KEY = os.environ.get('SECRET_KEY', '{}')\n", r(50))
    add("cloudflare-token", "held-out/cf.yaml", "cloudflare_api_token: {}\n", r(40, URLSAFE))
    add(
        "heroku-key",
        "held-out/heroku.env",
        "HEROKU_API_KEY={}\n",
        f"{r(8, LOWER_HEX)}-{r(4, LOWER_HEX)}-{r(4, LOWER_HEX)}-{r(4, LOWER_HEX)}-{r(12, LOWER_HEX)}",
    )
    add("datadog", "held-out/datadog.yaml", "api_key: {}\napp_key: {}\n", r(32, LOWER_HEX), r(40, LOWER_HEX))
    add(
        "pem-in-env",
        "held-out/tls.env",
        'TLS_KEY="-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----"\n',
        r(64, B64),
    )
    add("ldap-bind", "held-out/ldap.conf", "binddn cn=admin,dc=acme\nbindpw {}\n", password())
    add(
        "pgbouncer",
        "held-out/userlist.txt",
        '"app" "{}"\n',
        "SCRAM-SHA-256$4096:" + r(24, B64) + "$" + r(44, B64) + ":" + r(44, B64),
    )
    add("mongo-uri-in-yaml-list", "held-out/mongo.yaml", "hosts:\n  - mongodb://root:{}@m1:27017\n", password())
    add(
        "sendgrid-in-commit-like",
        "held-out/CHANGELOG.md",
        "- use key {} for mail\n",
        f"SG.{r(22, URLSAFE)}.{r(43, URLSAFE)}",
    )
    add("basic-auth-in-url-query", "held-out/hook.txt", "https://ci.acme.example/hook?token={}\n", r(32))

    # --- templates and copies of known formats, and structure in files of no known suffix
    add(
        "yaml-jinja-template",
        "edge/values.yaml.j2",
        "image: {{{{ image }}}}\ncredentials:\n  prod: {}\n  dev: {{{{ dev_pw }}}}\n",
        password(),
    )
    add("yaml-in-conf", "edge/app.conf", "db:\n  credentials:\n    main: {}\n", password())
    add("env-example", "edge/app.env.example", "API_SECRET={}\n", r(24))
    add("json-no-suffix", "edge/secrets", '{{"db": {{"creds": {{"main": "{}"}}}}}}\n', r(20))

    # --- maps and lists under a sensitive name, in syntaxes nothing parses
    add(
        "tfvars-map",
        "edge/prod.tfvars",
        'region = "eu"\ndb_credentials = {{\n  primary = "{}"\n  replica = "{}"\n}}\n',
        password(),
        password(),
        kept=('region = "eu"',),
    )
    add("tfvars-list", "edge/keys.tfvars", 'api_keys = [\n  "{}",\n  "{}",\n]\n', r(32), r(32))
    add("js-object", "edge/config.js", "module.exports = {{\n  secrets: {{\n    stripe: '{}',\n  }},\n}};\n", r(24))
    add("hcl-inline-map", "edge/vars.hcl", 'creds = {{ prod = "{}", dev = "{}" }}\n', password(), password())

    # --- YAML plain values holding what ends a value in other syntaxes
    add("yaml-plain-semicolon", "edge/semicolon.yaml", "db:\n  password: {};{}\n", r(10), r(10))
    add("yaml-plain-equals", "edge/equals.yaml", "api_token: {} x={}\n", r(12), r(12))
    add("yaml-plain-colon", "edge/colon.yaml", "client_secret: {}:{} {}\n", r(12), r(12), r(12))

    # --- a second held-out set, measured unseen after the first was folded in (README)
    add(
        "jenkins-credentials",
        "held-out-2/credentials.xml",
        "<com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl><id>deploy</id><password>{{{}}}</password></com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl>\n",
        "AQAAABAAAAAQ" + r(40, B64),
    )
    add("htpasswd-sha", "held-out-2/.htpasswd", "admin:{{SHA}}{}\n", r(27, B64) + "=")
    add("wp-config", "held-out-2/wp-config.php", "define( 'DB_PASSWORD', '{}' );\n", password())
    add(
        "kafka-jaas",
        "held-out-2/client.properties",
        'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="app" password="{}";\n',
        password(),
    )
    add("odbc", "held-out-2/odbc.ini", "[db]\nDriver=PostgreSQL\nPWD={}\n", password())
    add("pg-alter-user", "held-out-2/migrate.sql", "ALTER USER app PASSWORD '{}';\n", password())
    add("mysql-set-password", "held-out-2/reset.sql", "SET PASSWORD FOR 'app'@'%' = '{}';\n", password())
    add("redis-auth-cmd", "held-out-2/redis-cli.txt", "AUTH {}\n", password())
    add("docker-login-p", "held-out-2/login.sh", "docker login -u ci -p {} registry.acme.example\n", password())
    add("aws-configure-set", "held-out-2/setup.sh", "aws configure set aws_secret_access_key {}\n", r(40, B64))
    add("kubectl-token", "held-out-2/k.sh", "kubectl --token={} get pods\n", r(40, URLSAFE))
    add(
        "prometheus-basic-auth",
        "held-out-2/prometheus.yml",
        "scrape_configs:\n  - job_name: x\n    basic_auth:\n      username: prom\n      password: {}\n",
        password(),
    )
    add(
        "pagerduty-routing-key",
        "held-out-2/alertmanager.yml",
        "receivers:\n  - name: pd\n    pagerduty_configs:\n      - routing_key: {}\n",
        r(32, LOWER_HEX),
    )
    add("pagerduty-service-key", "held-out-2/am2.yml", "pagerduty_configs:\n  - service_key: {}\n", r(32, LOWER_HEX))
    add("grafana-admin", "held-out-2/grafana.ini", "[security]\nadmin_user = admin\nadmin_password = {}\n", password())
    add(
        "spring-oauth",
        "held-out-2/application.properties",
        "spring.security.oauth2.client.registration.github.client-secret={}\n",
        r(40, LOWER_HEX),
    )
    add("keycloak-export", "held-out-2/realm.json", '{{"clients": [{{"clientId": "app", "secret": "{}"}}]}}\n', r(32))
    add("vault-token-file", "held-out-2/.vault-token", "{}\n", "hvs." + r(90, URLSAFE))
    add("twilio-auth-token", "held-out-2/twilio.env", "TWILIO_AUTH_TOKEN={}\n", r(32, LOWER_HEX))
    add(
        "smtp-url", "held-out-2/mail.yaml", "smtp: smtps://mailer%40acme.example:{}@smtp.acme.example:465\n", password()
    )
    add(
        "yaml-anchor-secret", "held-out-2/anchors.yaml", "defaults: &db\n  password: {}\nprod:\n  <<: *db\n", password()
    )
    add("json-array-tokens", "held-out-2/tokens.json", '{{"tokens": ["{}", "{}"]}}\n', r(30), r(30))
    add("toml-inline-table", "held-out-2/app.toml", 'db = {{ host = "x", password = "{}" }}\n', password())
    add("ini-colon", "held-out-2/app.cfg", "[db]\npassword: {}\n", password())
    add("env-export-single", "held-out-2/export.env", "export API_SECRET='{}'\n", password())
    add("powershell-plain", "held-out-2/run.ps1", '$env:API_TOKEN = "{}"\n', r(32))
    add(
        "github-actions-env-literal",
        "held-out-2/ci.yml",
        "env:\n  SLACK_TOKEN: {}\n",
        "xoxb-" + r(11, "0123456789") + "-" + r(24),
    )
    add("helm-values-nested-list", "held-out-2/values.yaml", "users:\n  - name: admin\n    password: {}\n", password())
    add(
        "xml-attribute-password",
        "held-out-2/server.xml",
        '<Resource name="jdbc/app" username="app" password="{}" />\n',
        password(),
    )
    add(
        "ssh-private-in-yaml-folded",
        "held-out-2/deploy.yaml",
        "deploy_key: >\n  -----BEGIN OPENSSH PRIVATE KEY-----\n  {}\n  -----END OPENSSH PRIVATE KEY-----\n",
        r(64, B64),
    )
    return cases


SECRETS: list[Case] = _secret_cases()

# Secrets in the commit subject the snapshot records (one commit, one subject line).
SUBJECT_SECRETS: dict[str, str] = {
    "subject-ghp": "ghp_" + r(36),
    "subject-password-assignment": password(),
    "subject-slack-webhook-path": f"T{r(8, UPPER_ALNUM)}/B{r(10, UPPER_ALNUM)}/{r(24)}",
}
SUBJECT = (
    f"rotate CI token {SUBJECT_SECRETS['subject-ghp']}, set password={SUBJECT_SECRETS['subject-password-assignment']}"
    f" and hook https://hooks.slack.com/services/{SUBJECT_SECRETS['subject-slack-webhook-path']}"
)

# Short strings redact_text must clean: file names, commit bodies, ticket titles, PR bodies, log lines.
NAME_SECRETS: list[tuple[str, str, str]] = [
    ("file-name-ghp", "backup-{}.tar", "ghp_" + r(36)),
    ("file-name-aws-key-id", "creds/{}.csv", "AKIA" + r(16, UPPER_ALNUM)),
    ("ticket-title-password", "Reset DB: new password: {}", password()),
    ("pr-body-stripe", "Rotated the key, old one was {} (revoked)", "sk_live_" + r(40)),
    ("commit-body-url", "Point at postgres://app:{}@db/app", password()),
    ("log-line-bearer", "request failed: Authorization: Bearer {}", r(40, URLSAFE)),
    ("alert-jwt", "token {} expired", _jwt()),
    ("ticket-google-key", "Maps broken with key {}", "AIza" + r(35, URLSAFE)),
]


def _lookalike_cases() -> list[Case]:
    cases: list[Case] = []

    def add(case_id: str, path: str, content: str, *kept: str) -> None:
        cases.append(Case(case_id, path, content, (), kept or tuple(line for line in content.splitlines() if line)))

    add("max_tokens", "look/llm.yaml", "max_tokens: 4096\n")
    add("tokenizer", "look/tokenizer.yaml", "tokenizer: bert-base-uncased\n")
    add("token_ttl_seconds", "look/ttl.yaml", "token_ttl_seconds: 3600\n")
    add("secretary_email", "look/people.yaml", "secretary_email: office@acme.example\n")
    add("compass_heading", "look/nav.yaml", "compass_heading: north-north-west\n")
    add("github_token_scopes", "look/scopes.yaml", "github_token_scopes: repo, read:org\n")
    add("bypass_cache", "look/cache.yaml", "bypass_cache: false\n")
    add("password_encryption", "look/pg.conf", "password_encryption = scram-sha-256\n")
    add("password_min_length", "look/policy.json", '{"password_min_length": 14, "password_reuse_prevention": 24}\n')
    add("token_type", "look/oauth.yaml", "token_type: bearer\n")
    add("auth_method", "look/hba.yaml", "auth_method: scram-sha-256\n")
    add("env-var-placeholder", "look/ph.yaml", "password: ${DB_PASSWORD}\n")
    add("jinja-placeholder", "look/jinja.yaml", "password: '{{ vault_db_password }}'\n")
    add("actions-secret-ref", "look/workflow.yaml", "env:\n  TOKEN: ${{ secrets.DEPLOY_TOKEN }}\n")
    add("secret-name-ref", "look/deploy.yaml", "envFrom:\n  - secretRef:\n      name: app-secrets\n")
    add("secretKeyRef", "look/pod.yaml", "valueFrom:\n  secretKeyRef:\n    name: db\n    key: password\n")
    add("api_key_header_name", "look/gw.yaml", "api_key_header: X-API-Key\n")
    add("keyboard_layout", "look/kb.yaml", "keyboard_layout: us-intl\n")
    add("primary_key", "look/schema.yaml", "primary_key: account_id\nsort_key: created_at\n")
    add(
        "public_key_ssh",
        "look/pub.yaml",
        "public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@acme\n",
    )
    add(
        "certificate",
        "look/cert.pem",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ29tcGxldGVseU5vdEFTZWNyZXQ\n-----END CERTIFICATE-----\n",
    )
    add("git-sha", "look/lock.yaml", "commit: 3f786850e387550fdab836ed7e6dc881de23001b\n")
    add("uuid", "look/ids.yaml", "request_id: 123e4567-e89b-12d3-a456-426614174000\n")
    add(
        "image-digest",
        "look/image.yaml",
        "image: nginx@sha256:0a5b0b9b1c9a4f0b2a1f3e6c7d8e9f001122334455667788990aabbccddeeff0\n",
    )
    add("plain-url", "look/url.yaml", "endpoint: https://api.acme.example/v1/items?page=2\n")
    add("ssh-url-user-only", "look/git.yaml", "remote: ssh://git@github.com/acme/infra.git\n")
    add("url-port-path-at", "look/port.yaml", "mirror: https://host.acme.example:8443/path@v2\n")
    add("passport", "look/kyc.yaml", "passport_number_field: document_id\n")
    add("passenger_count", "look/trip.yaml", "passenger_count: 3\n")
    add("spinner", "look/ui.yaml", "spinner: dots\nping_interval: 30\n")
    add("design_system", "look/design.yaml", "design_system: material\n")
    add("auth_url", "look/idp.yaml", "auth_url: https://login.acme.example/oauth2/authorize\n")
    add("token_endpoint", "look/oidc.json", '{"token_endpoint": "https://login.acme.example/oauth2/token"}\n')
    add("aws_region", "look/aws.env", "AWS_REGION=us-east-1\nAWS_PROFILE=audit\n")
    add("key-value-list", "look/kv.yaml", "- key: env\n  value: production\n")
    add("prose-password", "look/README.md", "Rotate the password every 90 days; tokens expire after an hour.\n")
    add("bearer-prose", "look/notes.md", "Clients send a bearer token in the Authorization header.\n")
    add("cookie_name", "look/cookie.yaml", "cookie_name: session\nsession_cookie_secure: true\n")
    add("kms_key_alias", "look/kms.yaml", "kms_key: alias/evidence\n")
    add(
        "hash-hex",
        "look/sums.txt",
        "sha256  9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  file.tar\n",
    )
    add(
        "base64-not-secret",
        "look/logo.yaml",
        "logo_png_base64: iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\n",
    )
    add("password-policy-block", "look/policy.yaml", "password_policy:\n  min_length: 14\n  require_symbols: true\n")
    add("numbers-and-booleans", "look/flags.env", "ENABLE_AUTH=true\nTOKEN_LIMIT=100\n")
    add("json-ticket", "look/ticket.json", '{"title": "Password reset page returns 500", "labels": ["auth", "bug"]}\n')

    # --- identifiers called keys: found over-redacted by the validation findings' record_key
    add("record_key", "look/finding.json", '{"record_key": {"id": "CHG-102"}, "check": "approved_before_merge"}\n')
    add("issue_key", "look/jira.yaml", "issue_key: CHG-12\nproject_key: CHG\n")
    add("s3_object_key", "look/s3.yaml", "s3_object_key: evidence/2026/11/25/bundle.json\n")

    # --- held out, as the secrets above
    add("tokens_per_minute", "held-out/look/llm.yaml", "tokens_per_minute: 90000\n")
    add("password_hash_algorithm", "held-out/look/auth.yaml", "password_hash_algorithm: argon2id\n")
    add("secret_manager", "held-out/look/infra.yaml", "secret_manager: aws-secretsmanager\n")
    add("auth_provider", "held-out/look/sso.yaml", "auth_provider: okta\n")
    add("keycloak_realm", "held-out/look/kc.yaml", "keycloak_realm: employees\n")
    add("oauth_redirect", "held-out/look/oauth.yaml", "redirect_uri: https://app.acme.example/callback\n")
    add("credential_helper", "held-out/look/.gitconfig", "[credential]\n\thelper = osxkeychain\n")
    add("token_audience", "held-out/look/jwt.yaml", "token_audience: api://default\n")
    add("sso_session", "held-out/look/session.yaml", "session_duration: 8h\n")
    add("passthrough", "held-out/look/proxy.yaml", "tls_passthrough: enabled\n")
    add("keyspace", "held-out/look/cassandra.yaml", "keyspace: audit_log\n")
    add(
        "keystore_type",
        "held-out/look/server.properties",
        "ssl.keystore.type=PKCS12\nssl.keystore.location=/etc/ks.p12\n",
    )
    add("pinned_version", "held-out/look/deps.yaml", "pinned_version: 1.4.2\n")
    add("signal_handler", "held-out/look/app.yaml", "signal_handler: graceful\n")
    add("tokenize_urls", "held-out/look/search.yaml", "tokenize_urls: true\n")
    add("passive_mode", "held-out/look/ftp.yaml", "passive_mode: on\n")
    add("auth_required", "held-out/look/api.yaml", "auth_required: true\nauth_scheme: bearer\n")
    add("secrets_path", "held-out/look/vault.yaml", "secrets_path: kv/data/app\n")
    add("key_vault_name", "held-out/look/azure.yaml", "key_vault_name: acme-prod-kv\n")
    add("ssh_key_path", "held-out/look/ansible.cfg", "[defaults]\nprivate_key_file = ~/.ssh/id_ed25519\n")
    add("commit-msg", "held-out/look/NOTES.md", "Fix token refresh when the password changes\n")
    add("checksum", "held-out/look/checksums.txt", "md5: 9e107d9d372bb6826bd81d3542a419d6\n")
    add("aws-arn", "held-out/look/iam.yaml", "role_arn: arn:aws:iam::123456789012:role/audit\n")
    add("k8s-configmap", "held-out/look/cm.yaml", "apiVersion: v1\nkind: ConfigMap\ndata:\n  LOG_LEVEL: debug\n")

    # --- the second held-out set
    add("ssl-cert-key-path", "held-out-2/look/nginx.conf", "ssl_certificate_key /etc/nginx/tls/site.key;\n")
    add("credsStore", "held-out-2/look/config.json", '{"credsStore": "desktop"}\n')
    add(
        "private_key_id",
        "held-out-2/look/sa.json",
        '{"private_key_id": "1234abcd", "client_email": "x@y.iam.gserviceaccount.com"}\n',
    )
    add("sslcertkeyfile", "held-out-2/look/httpd.conf", "SSLCertificateKeyFile /etc/pki/tls/private/site.key\n")
    add("erb-placeholder", "held-out-2/look/database.yml", "password: <%= ENV['DB_PASSWORD'] %>\n")
    add(
        "secret-file-ref",
        "held-out-2/look/compose.yml",
        "secrets:\n  db_password:\n    file: ./secrets/db_password.txt\n",
    )
    add("password_file", "held-out-2/look/pg.yaml", "password_file: /run/secrets/db_password\n")
    add("token_url", "held-out-2/look/oauth.properties", "token_url=https://login.acme.example/oauth/token\n")
    add("api_key_prefix", "held-out-2/look/api.yaml", "api_key_prefix: Bearer\n")
    add("keepalive", "held-out-2/look/ha.cfg", "keepalive_timeout = 65\n")
    add("pin_memory", "held-out-2/look/train.yaml", "pin_memory: true\nnum_workers: 4\n")
    add("signing_algorithm", "held-out-2/look/jwt.yaml", "signing_algorithm: RS256\n")
    add("passwordless", "held-out-2/look/auth.yaml", "passwordless_login: enabled\n")
    add("authority", "held-out-2/look/oidc.yaml", "authority: https://login.microsoftonline.com/common\n")
    add("key_rotation_days", "held-out-2/look/kms.yaml", "key_rotation_days: 365\n")
    return cases


LOOKALIKES: list[Case] = _lookalike_cases()
