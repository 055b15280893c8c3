"""The exception tree and its one-line, secret-free messages."""

from __future__ import annotations

import pickle

import pytest

import jupyter_imagine as ji
from jupyter_imagine import _secrets
from jupyter_imagine.errors import error_class


def test_tree():
    assert issubclass(ji.InvalidMask, ji.InvalidRequest)
    assert issubclass(ji.ActionNotAvailable, ji.InvalidRequest)
    assert issubclass(ji.InvalidRequest, ValueError)
    assert issubclass(ji.NotFound, LookupError)
    assert issubclass(ji.JobTimeout, TimeoutError)
    assert issubclass(ji.JobCancelled, ji.JobFailed)
    assert issubclass(ji.BudgetExceeded, ji.ImagineError)
    assert not issubclass(ji.BudgetExceeded, ji.ProviderError)  # refused here, never sent
    for cls in (ji.AuthenticationError, ji.PermissionDenied, ji.RateLimited, ji.QuotaExceeded,
                ji.ModeratedPrompt, ji.ServiceUnavailable):
        assert issubclass(cls, ji.ProviderError) and issubclass(cls, ji.ImagineError)


def test_message_is_one_line_and_redacted():
    _secrets.register("sk-live-ABCDEF123456")
    err = ji.ProviderError("bad\nkey sk-live-ABCDEF123456\n  here", provider="apiframe",
                           status_code=401)
    assert str(err) == "bad key *** here"
    assert err.provider == "apiframe" and err.status_code == 401


def test_pickle_round_trip():
    original = ji.RateLimited("slow down", retry_after=3, provider="apiframe")
    err = pickle.loads(pickle.dumps(original))
    assert isinstance(err, ji.RateLimited) and str(err) == "slow down"
    assert err.provider == "apiframe" and err.retry_after == 3


@pytest.mark.parametrize("name, cls", [("ModeratedPrompt", ji.ModeratedPrompt),
                                       ("JobTimeout", ji.JobTimeout), (None, ji.JobFailed),
                                       ("BudgetExceeded", ji.BudgetExceeded),
                                       ("NoSuchError", ji.JobFailed)])
def test_error_class_lookup(name, cls):
    assert error_class(name) is cls
