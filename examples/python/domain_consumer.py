#!/usr/bin/env python3
"""Example: a Python consumer of Tributary's domain events (nats-py + protobuf).

Fetches the schemas at run time from the NATS object store where the bridge publishes
them (bucket `tributary_schemas`, object `tributary.binpb`: a FileDescriptorSet), so no
generated code or protoc is needed. Subscribes to `retail.v1.>` on the `RETAIL` stream with
a durable pull consumer, decodes each `tributary.retail.v1.DomainEvent`, prints it as one
JSON line and acks it.

    pip install nats-py protobuf
    python3 examples/python/domain_consumer.py --server nats://127.0.0.1:4222 --durable my-svc
"""

import argparse
import asyncio
import json
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict


def load_types(fds_bytes, names=("tributary.retail.v1.DomainEvent",)):
    """Builds the message classes `names` from a serialized FileDescriptorSet (one class for
    one name, else a tuple in the order given)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(fds_bytes)
    pool = descriptor_pool.DescriptorPool()
    pending = list(fds.file)
    # Add files once their imports are in the pool (the set's order is not guaranteed).
    while pending:
        added = [f for f in pending if all(_has_file(pool, d) for d in f.dependency)]
        if not added:
            raise RuntimeError("descriptor set has unresolved imports")
        for f in added:
            pool.Add(f)
        pending = [f for f in pending if f not in added]
    classes = tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(n)) for n in names
    )
    return classes[0] if len(classes) == 1 else classes


def _has_file(pool, name):
    try:
        pool.FindFileByName(name)
        return True
    except KeyError:
        return False


async def run(args):
    nc = await nats.connect(args.server)
    js = nc.jetstream()
    store = await js.object_store(args.schema_bucket)
    schema = await store.get(args.schema_object)
    DomainEvent = load_types(schema.data)

    sub = await js.pull_subscribe("retail.v1.>", durable=args.durable, stream=args.stream)
    seen = 0
    idle_deadline = asyncio.get_running_loop().time() + args.timeout
    while args.count == 0 or seen < args.count:
        try:
            msgs = await sub.fetch(batch=32, timeout=1)
        except NatsTimeout:
            if asyncio.get_running_loop().time() > idle_deadline:
                raise SystemExit(f"no event for {args.timeout} s after {seen} events")
            continue
        for msg in msgs:
            event = DomainEvent.FromString(msg.data)
            entity = event.WhichOneof("entity")
            print(json.dumps({
                "subject": msg.subject,
                "event_id": event.meta.event_id,
                "entity_key": event.meta.entity_key,
                "entity_version": event.meta.entity_version,
                "system": event.meta.system_of_record,
                "entity": entity,
                "fields": MessageToDict(getattr(event, entity)) if entity else {},
            }), flush=True)
            # Ack after handling; a crash before it redelivers (dedupe by meta.event_id).
            await msg.ack()
            seen += 1
            idle_deadline = asyncio.get_running_loop().time() + args.timeout
            if args.count and seen >= args.count:
                break
    await nc.drain()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="nats://127.0.0.1:4222")
    p.add_argument("--durable", default="python-example")
    p.add_argument("--stream", default="RETAIL")
    p.add_argument("--schema-bucket", default="tributary_schemas")
    p.add_argument("--schema-object", default="tributary.binpb")
    p.add_argument("--count", type=int, default=0, help="stop after N events (0: run forever)")
    p.add_argument("--timeout", type=float, default=30, help="give up after N idle seconds")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
