"""The offline provider: no network, no keys, ``livemode`` false, Stripe's object shapes and states.

Intents are confirmed with the provider's usual test payment methods: ``pm_card_visa`` succeeds,
``pm_card_chargeDeclined`` declines (back to ``requires_payment_method`` with
``last_payment_error.code = "card_declined"``), ``pm_card_authenticationRequired`` asks for action.
"""
from allynet.payments.offline_billing import OfflineBilling
from allynet.payments.provider import PaymentProvider


class OfflineProvider(OfflineBilling, PaymentProvider):
    name = "offline"
    livemode = False
