import os
import time

from redisq import App

app = App(os.environ["REDIS_URL"])


@app.task(name="bench.noop")
def noop():
    app.client.incr("counter")


@app.task(name="bench.stamp")
def stamp(sent):
    app.client.rpush("lat", repr(time.time() - sent))
