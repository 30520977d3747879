"""Pure parts of the issue 15 fixes: the advert-failure bound and one-line-per-burst logs."""

from __future__ import annotations

import logging

import pytest

from vigil.log import RateLimitedLog
from vigil.vrrp.runtime import TX_BACKOFF_MAX, TxWatch

pytestmark = pytest.mark.unit


def test_tx_watch_gives_up_after_two_intervals_of_failures() -> None:
    tx = TxWatch()
    assert tx.sent(False, 10.0, 0.1, "Operation not permitted") is False
    assert tx.sent(False, 10.1, 0.1) is False
    assert tx.sent(False, 10.2, 0.1) is True
    assert tx.error == "Operation not permitted" and tx.failures == 3


def test_tx_watch_good_send_resets_streak_and_backoff() -> None:
    tx = TxWatch()
    tx.sent(False, 0.0, 1.0)
    assert [tx.gave_up() for _ in range(8)] == [1, 2, 4, 8, 16, 32, TX_BACKOFF_MAX, TX_BACKOFF_MAX]
    assert tx.sent(True, 100.0, 1.0) is False
    assert tx.failing_since is None
    assert tx.gave_up() == 1


def test_rate_limited_log_one_line_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger, interval=3600)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        assert limited.warning("k", "refused %d", 1) is True
        assert not any(limited.warning("k", "refused %d", i) for i in range(2, 1000))
        assert limited.warning("other", "another kind") is True
    assert [r.getMessage() for r in caplog.records] == ["refused 1", "another kind"]
    limited._flush("k")  # what the timer does when the burst's interval is over
    assert caplog.records[-1].getMessage() == "refused 999 (and 997 more like it within 3600s)"
