"""Who can reach the server, and what travels in the clear: the warnings a risky setup gets at start
(and a client sending its token unencrypted to another machine)."""

import stat

from vidsearch.serving.address import is_loopback
from vidsearch.serving.settings import ServerSettings


def exposure_warnings(settings: ServerSettings) -> list[str]:
    """What is risky about these settings, one sentence each (empty: nothing)."""
    problems = []
    if not is_loopback(settings.host):
        if settings.tls.cert is None:
            problems.append(f"serving on {settings.host} without TLS: queries, videos and bearer tokens "
                            "cross the network in plaintext (set tls.cert and tls.key)")
        if not settings.auth.all_tokens():
            problems.append(f"serving on {settings.host} without tokens: anyone who reaches it may search, "
                            "ingest and delete (set auth.tokens or auth.token_file)")
    key = settings.tls.key
    if key is not None and key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(f"the TLS key {key} is readable by other users (chmod 600 it)")
    metrics_host = settings.metrics_host or settings.host
    if settings.metrics_port is not None and not is_loopback(metrics_host):
        problems.append(f"/metrics is served on {metrics_host} over plain HTTP without authentication "
                        "(bind it to a private address with metrics_host)")
    return problems
