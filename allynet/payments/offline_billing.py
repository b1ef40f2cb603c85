"""The offline provider's customers and subscriptions (mixed into OfflineProvider)."""


class OfflineBilling:
    """create_customer, create_subscription, retrieve_subscription, cancel_subscription offline."""
