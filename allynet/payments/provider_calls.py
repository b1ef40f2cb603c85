"""Calling the provider from the plan and promotion services: its errors as the contract's."""
from allynet.errors import NotFound
from allynet.payments import service as payments_service
from allynet.payments.provider import ProviderError


def call_provider(fn, *args, **kwargs):
    """Call the provider: an unknown object is 404, any other refusal or failure the payments service's
    error (409 payment_provider_refused, 502 payment_provider_error)."""
    try:
        return fn(*args, **kwargs)
    except ProviderError as exc:
        if exc.status == 404:
            raise NotFound(str(exc)) from exc
        raise payments_service.provider_failure(exc) from exc
