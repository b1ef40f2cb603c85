"""Map data's background loops: the traffic aggregation and the on-the-road weather check.

Both read stored data only (trail points, members' flushed positions), never the live path; both
are safe in several processes at once (cells are replaced whole, an episode is claimed by its
unique id, so a party is alerted once).
"""
from allynet.background import periodic
from allynet.db import get_db
from allynet.mapdata import traffic, weather


@periodic("traffic", lambda config: float(config["TRAFFIC_INTERVAL_SECONDS"]))
def aggregate_traffic(app):
    """Recompute the published traffic cells."""
    return traffic.aggregate(db=get_db(), config=app.config)


@periodic("weather_check", lambda config: float(config["WEATHER_CHECK_SECONDS"]))
def check_weather_on_the_road(app):
    """Alert parties riding into ice, heavy rain, strong wind or low visibility."""
    return weather.check_parties(app=app, db=get_db())
