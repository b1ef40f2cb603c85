-- wrk script: every request carries the access token from $TOKEN (see bench/rest.py).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
