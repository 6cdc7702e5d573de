"""Settings, declared once as data (name, default, help) and read from the environment.

Every setting is documented in the README; a test checks that. Nothing here touches the network
or the disk beyond creating the data directory when asked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from .netguard import NetworkPolicy


@dataclass(frozen=True)
class Setting:
    name: str  # environment variable
    default: Optional[str]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("MSEARCH_DATA_DIR", None,
            "Directory for the SQLite database, image derivatives and indexes "
            "(default: ./msearch-data)."),
    Setting("MSEARCH_DB", None,
            "SQLAlchemy database URL (default: sqlite:///<data dir>/msearch.sqlite3; "
            "postgresql+psycopg://user:pass@host/db for PostgreSQL)."),
    Setting("MSEARCH_MODEL", "google/siglip2-base-patch16-224",
            "Vision-language model: a Hugging Face hub id or a local directory in HF format."),
    Setting("MSEARCH_DEVICE", None,
            "Torch device for encoders and the region detector (default: cuda when present, else cpu)."),
    Setting("MSEARCH_REGION_MODEL", None,
            "Detection model for `--regions detector`: a Hugging Face hub id or a local directory holding an "
            "object detector (AutoModelForObjectDetection: DETR, YOLOS...) or a zero-shot one (OWL-ViT, "
            "OWLv2). Unset: no detector."),
    Setting("MSEARCH_REGION_PROMPTS",
            "a miniature painting;a decorated initial;a drawing in the margin;a diagram;musical notation",
            "What a zero-shot detector looks for, separated by semicolons (a closed-set detector finds "
            "the classes it was trained on)."),
    Setting("MSEARCH_REGION_THRESHOLD", "0.1",
            "Score (0 to 1) a detection must exceed to become a region; the best --region-limit are kept."),
    Setting("MSEARCH_IMAGE_SIZE", "448",
            "Long edge in pixels of the derivative fetched per canvas for encoding."),
    Setting("MSEARCH_USER_AGENT", None,
            "User-Agent sent to IIIF servers (default: manuscripts-search/<version> (+project URL))."),
    Setting("MSEARCH_HTTP_TIMEOUT", "30", "Connect and read timeout in seconds for harvesting."),
    Setting("MSEARCH_MAX_RESPONSE_BYTES", str(64 * 1024 * 1024),
            "Largest response body the harvester accepts, in bytes."),
    Setting("MSEARCH_ADMIN_TOKEN", None,
            "Enables the web admin (add sources, start harvests, delete): a long random string, "
            "given on /admin or as `Authorization: Bearer`. Never logged. Unset: admin disabled."),
    Setting("MSEARCH_PUBLIC_URL", "http://127.0.0.1:5000",
            "Public base URL of the web app, used by `msearch publish` in the manifests it writes."),
    Setting("MSEARCH_ALLOW_HOSTS", "",
            "Comma-separated host names, IP addresses and networks (10.1.0.0/16) that harvesting and "
            "image URLs may reach even when they are private or loopback (default: none)."),
    Setting("MSEARCH_ALLOW_PRIVATE_NETWORKS", "0",
            "1 lets harvesting and image URLs reach loopback and private networks (an intranet "
            "installation); link-local and cloud metadata addresses stay refused. Default 0: public only."),
    # Used by the web app (web/logging_setup.py, web/ratelimit.py), through Config like the rest.
    Setting("MSEARCH_LOG_FORMAT", "json", "Web server log records: json (one object per line) or text."),
    Setting("MSEARCH_LOG_LEVEL", "INFO", "Web server log level: DEBUG, INFO, WARNING or ERROR."),
    Setting("MSEARCH_SEARCH_RATE_LIMIT", "60/minute",
            "Searches per client IP and worker process (n/second|minute|hour); 0 or off disables."),
    Setting("MSEARCH_SEARCH_RATE_BURST", "20", "Searches a client may make at once before the rate applies."),
    Setting("MSEARCH_INDEX_MEMORY", None,
            "Memory the vector index of a space may use (e.g. 8GiB, 512MB); `msearch index --layout auto` "
            "picks the best-recall layout that fits (default: half of this machine's memory)."),
    Setting("MSEARCH_SEARCH_BACKEND", "local",
            "Where the shards of a sharded index (`msearch index --shards N`) are searched: local (in "
            "each web process, from MSEARCH_DATA_DIR/index) or ray (Ray Serve deployments started by "
            "`msearch shards serve`)."),
    Setting("MSEARCH_RAY_ADDRESS", None,
            "The Ray cluster for MSEARCH_SEARCH_BACKEND=ray and `msearch shards serve`: auto, "
            "ray://head:10001 or head:6379 (default: auto, the cluster this machine is a node of)."),
    Setting("MSEARCH_SHARD_DEADLINE", "2",
            "Seconds a search waits for each index shard; a shard that has not answered by then is "
            "left out and the results say they are partial."),
    Setting("MSEARCH_TRUSTED_PROXIES", "0",
            "Reverse proxies in front of the web server that set X-Forwarded-For (for the client's IP)."),
    Setting("MSEARCH_SCORE_FLOORS", "auto",
            "The score a text query's hit must beat, per k-NN signal: auto (learned per model space from "
            "what nonsense queries score), off, or signal=value pairs such as visual=0.22,semantic=auto."),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}
DEFAULT_REGION_PROMPTS = tuple(_DEFAULTS["MSEARCH_REGION_PROMPTS"].split(";"))


@dataclass(frozen=True)
class Config:
    data_dir: Path
    db_url: str
    model: str
    device: Optional[str]
    image_size: int
    user_agent: str
    http_timeout: float
    max_response_bytes: int
    extra: dict = field(default_factory=dict)
    # The web server's settings; None where unset, so that the app's own default applies (a test
    # app, for one, is not rate limited unless asked).
    admin_token: Optional[str] = field(default=None, repr=False)  # a secret: never printed
    log_format: Optional[str] = None
    log_level: Optional[str] = None
    search_rate_limit: Optional[str] = None
    search_rate_burst: Optional[str] = None
    trusted_proxies: Optional[str] = None
    index_memory: Optional[int] = None  # bytes; None: half of this machine's memory
    search_backend: str = "local"  # local | ray: where a sharded index's shards are searched
    ray_address: Optional[str] = None
    shard_deadline: float = 2.0  # seconds
    # signal -> "auto" | None (off) | a fixed floor (search/calibration.py); a signal not named: auto
    score_floors: dict = field(default_factory=dict)
    public_url: str = "http://127.0.0.1:5000"  # where the web app is served (published folders' URLs)
    # The optional region detector (harvest/region_detector.py): model, zero-shot prompts, score floor.
    region_model: Optional[str] = None
    region_prompts: tuple[str, ...] = DEFAULT_REGION_PROMPTS
    region_threshold: float = float(_DEFAULTS["MSEARCH_REGION_THRESHOLD"])
    # Which addresses harvesting and image URLs may reach (SSRF rule); public only by default.
    network_policy: NetworkPolicy = field(default_factory=NetworkPolicy)

    @property
    def derivatives_dir(self) -> Path:
        return self.data_dir / "derivatives"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    def replace(self, **changes) -> "Config":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def _int_setting(env: dict, name: str, minimum: int = 1) -> int:
    raw = env.get(name) or _DEFAULTS[name]
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


MAX_REGION_PROMPTS = 32
MAX_REGION_PROMPT_CHARS = 200  # detectors' text towers read a few dozen tokens at most


def _region_prompts(env: dict) -> tuple[str, ...]:
    raw = env.get("MSEARCH_REGION_PROMPTS") or _DEFAULTS["MSEARCH_REGION_PROMPTS"]
    prompts = tuple(dict.fromkeys(part.strip() for part in raw.split(";") if part.strip()))
    if not prompts:
        raise ConfigError("MSEARCH_REGION_PROMPTS must name at least one thing to look for "
                          "(prompts separated by semicolons)")
    if len(prompts) > MAX_REGION_PROMPTS:
        raise ConfigError(f"MSEARCH_REGION_PROMPTS holds {len(prompts)} prompts; at most {MAX_REGION_PROMPTS}")
    too_long = [p for p in prompts if len(p) > MAX_REGION_PROMPT_CHARS]
    if too_long:
        raise ConfigError(f"MSEARCH_REGION_PROMPTS: a prompt is at most {MAX_REGION_PROMPT_CHARS} characters, "
                          f"got {len(too_long[0])} ({too_long[0][:40]!r}...)")
    return prompts


def _region_threshold(env: dict) -> float:
    raw = env.get("MSEARCH_REGION_THRESHOLD") or _DEFAULTS["MSEARCH_REGION_THRESHOLD"]
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"MSEARCH_REGION_THRESHOLD must be a number from 0 to 1, got {raw!r}") from None
    if not 0 <= value <= 1:  # also refuses nan
        raise ConfigError(f"MSEARCH_REGION_THRESHOLD must be from 0 to 1, got {raw!r}")
    return value


def environment() -> dict:
    """A copy of this process's environment: the one place that reads it (settings, and what a
    child process inherits)."""
    return dict(os.environ)


def child_environment(**settings: str) -> dict:
    """The environment for a child ``msearch`` process: this one's, less the admin token (a child
    needs no secret it does not use), plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if name != "MSEARCH_ADMIN_TOKEN"}
    env.update(settings)
    return env


def load_config(env: Optional[dict] = None, **overrides) -> Config:
    """Build the configuration from environment variables (or ``env``), then ``overrides``."""
    from . import __version__

    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("MSEARCH_DATA_DIR") or "msearch-data").expanduser().resolve()
    db_url = env.get("MSEARCH_DB") or f"sqlite:///{data_dir / 'msearch.sqlite3'}"
    try:
        timeout = float(env.get("MSEARCH_HTTP_TIMEOUT") or _DEFAULTS["MSEARCH_HTTP_TIMEOUT"])
    except ValueError:
        raise ConfigError("MSEARCH_HTTP_TIMEOUT must be a number of seconds") from None
    try:
        network_policy = NetworkPolicy.from_env(env)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    index_memory = None
    if env.get("MSEARCH_INDEX_MEMORY"):
        from .index.layouts import parse_memory

        try:
            index_memory = parse_memory(env["MSEARCH_INDEX_MEMORY"])
        except ValueError as error:
            raise ConfigError(f"MSEARCH_INDEX_MEMORY: {error}") from None
    search_backend = (env.get("MSEARCH_SEARCH_BACKEND") or _DEFAULTS["MSEARCH_SEARCH_BACKEND"]).strip().lower()
    if search_backend not in ("local", "ray"):
        raise ConfigError(f"MSEARCH_SEARCH_BACKEND must be local or ray, got {search_backend!r}")
    try:
        shard_deadline = float(env.get("MSEARCH_SHARD_DEADLINE") or _DEFAULTS["MSEARCH_SHARD_DEADLINE"])
        if not 0 < shard_deadline <= 600:
            raise ValueError
    except ValueError:
        raise ConfigError("MSEARCH_SHARD_DEADLINE must be a number of seconds between 0 and 600") from None
    from .search.calibration import parse_score_floors

    try:
        score_floors = parse_score_floors(env.get("MSEARCH_SCORE_FLOORS"))
    except ValueError as error:
        raise ConfigError(f"MSEARCH_SCORE_FLOORS: {error}") from None
    config = Config(
        data_dir=data_dir,
        db_url=db_url,
        model=env.get("MSEARCH_MODEL") or _DEFAULTS["MSEARCH_MODEL"],
        device=env.get("MSEARCH_DEVICE") or None,
        image_size=_int_setting(env, "MSEARCH_IMAGE_SIZE", minimum=16),
        user_agent=env.get("MSEARCH_USER_AGENT")
        or f"manuscripts-search/{__version__} (+https://github.com/manuscripts-search/manuscripts-search)",
        http_timeout=timeout,
        max_response_bytes=_int_setting(env, "MSEARCH_MAX_RESPONSE_BYTES"),
        network_policy=network_policy,
        admin_token=(env.get("MSEARCH_ADMIN_TOKEN") or "").strip() or None,
        log_format=env.get("MSEARCH_LOG_FORMAT") or None,
        log_level=env.get("MSEARCH_LOG_LEVEL") or None,
        search_rate_limit=env.get("MSEARCH_SEARCH_RATE_LIMIT") or None,
        search_rate_burst=env.get("MSEARCH_SEARCH_RATE_BURST") or None,
        trusted_proxies=env.get("MSEARCH_TRUSTED_PROXIES") or None,
        index_memory=index_memory,
        search_backend=search_backend,
        ray_address=(env.get("MSEARCH_RAY_ADDRESS") or "").strip() or None,
        shard_deadline=shard_deadline,
        score_floors=score_floors,
        public_url=env.get("MSEARCH_PUBLIC_URL") or _DEFAULTS["MSEARCH_PUBLIC_URL"],
        region_model=(env.get("MSEARCH_REGION_MODEL") or "").strip() or None,
        region_prompts=_region_prompts(env),
        region_threshold=_region_threshold(env),
    )
    return config.replace(**overrides) if overrides else config


RAY_SERVE_THROUGHPUT_SWITCH = "RAY_SERVE_THROUGHPUT_OPTIMIZED"


def ray_serve_throughput_switch() -> str:
    """Ray Serve's throughput-optimised mode for this process, and for a local Ray it starts:
    on ("1") unless the environment already says (``0`` keeps Serve's default mode). Serve reads
    the variable itself, once, when it is imported, so it is put in this process's environment
    (distributed/ray_search.py says why the mode is wanted). Returns the value."""
    return os.environ.setdefault(RAY_SERVE_THROUGHPUT_SWITCH, "1")
