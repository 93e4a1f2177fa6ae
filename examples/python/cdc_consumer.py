#!/usr/bin/env python3
"""Example: a Python consumer of Tributary's row-change events (nats-py + protobuf).

Reads a source's stream (e.g. `CDC_ERP`) from the start with a durable pull consumer,
decodes each `tributary.cdc.v1.ChangeEvent` with the schemas the bridge publishes (object
store `tributary_schemas`, or `--descriptor-file`), prints it as one JSON line with the row by column name, and acks
it. Events of a source with `schema = "reference"` carry `schema_id` instead of their column
list: the description (`tributary.cdc.v1.RelationSchema`) is read once per id from the KV
bucket `tributary_cdc_schemas` (key = id) and cached. An id never changes meaning, and the
bridge stores a schema before any event naming it.

    pip install nats-py protobuf
    python3 examples/python/cdc_consumer.py --server nats://127.0.0.1:4222 --stream CDC_ERP
"""

import argparse
import asyncio
import json
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout
from google.protobuf.json_format import MessageToDict

from domain_consumer import load_types


BATCH_TOKENS = ("insert_batch", "update_batch", "delete_batch", "read_batch")


def is_batch_subject(subject):
    """`<prefix>.<source>.<schema>.<table>.<op>_batch`; never a logical decoding message
    (`<prefix>.<source>._message.<message prefix>`), whatever its prefix."""
    tokens = subject.split(".")
    return len(tokens) >= 2 and tokens[-1] in BATCH_TOKENS and tokens[-2] != "_message"


class Schemas:
    """Column descriptions by schema id, fetched from the KV bucket on first sight."""

    def __init__(self, js, bucket, RelationSchema):
        self.js, self.bucket_name, self.RelationSchema = js, bucket, RelationSchema
        self.bucket, self.by_id = None, {}

    async def columns(self, event):
        """(columns, key columns) of the event: inline, or from the schema its id names."""
        if not event.schema_id:
            return list(event.columns), list(event.key_columns)
        if event.schema_id not in self.by_id:
            if self.bucket is None:
                self.bucket = await self.js.key_value(self.bucket_name)
            entry = await self.bucket.get(event.schema_id)
            self.by_id[event.schema_id] = self.RelationSchema.FromString(entry.value)
        schema = self.by_id[event.schema_id]
        return list(schema.columns), list(schema.key_columns)


async def run(args):
    nc = await nats.connect(args.server)
    js = nc.jetstream()
    if args.descriptor_file:
        with open(args.descriptor_file, "rb") as f:
            descriptors = f.read()
    else:
        store = await js.object_store(args.schema_bucket)
        descriptors = (await store.get(args.schema_object)).data
    ChangeEvent, ChangeEventBatch, RelationSchema = load_types(
        descriptors,
        (
            "tributary.cdc.v1.ChangeEvent",
            "tributary.cdc.v1.ChangeEventBatch",
            "tributary.cdc.v1.RelationSchema",
        ),
    )
    schemas = Schemas(js, args.relation_bucket, RelationSchema)
    OP = ChangeEvent.DESCRIPTOR.fields_by_name["op"].enum_type

    sub = await js.pull_subscribe(">", durable=args.durable, stream=args.stream)
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
            # A source with `snapshot_rows_per_message` or `changes_per_message` above 1
            # publishes batches (`ChangeEventBatch` on `...<op>_batch`): one message, several
            # events.
            if is_batch_subject(msg.subject):
                events = list(ChangeEventBatch.FromString(msg.data).events)
            else:
                events = [ChangeEvent.FromString(msg.data)]
            for event in events:
                columns, keys = await schemas.columns(event)
                image = event.after if event.HasField("after") else event.before
                row = {
                    c.name: MessageToDict(v) for c, v in zip(columns, image.values)
                }
                print(json.dumps({
                    "subject": msg.subject,
                    "event_id": event.event_id,
                    "op": OP.values_by_number[event.op].name,
                    "schema_id": event.schema_id,
                    "key_columns": keys,
                    "row": row,
                }), flush=True)
            # Ack after handling; a crash before it redelivers (dedupe by event_id).
            await msg.ack()
            seen += len(events)
            idle_deadline = asyncio.get_running_loop().time() + args.timeout
            if args.count and seen >= args.count:
                break
    await nc.drain()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="nats://127.0.0.1:4222")
    p.add_argument("--stream", default="CDC_ERP")
    p.add_argument("--durable", default="python-cdc-example")
    p.add_argument("--schema-bucket", default="tributary_schemas")
    p.add_argument("--schema-object", default="tributary.binpb")
    p.add_argument(
        "--descriptor-file",
        help="a FileDescriptorSet file (proto/descriptors/tributary.binpb) instead of the "
        "object store, which only a bridge with a [domain] section fills",
    )
    p.add_argument("--relation-bucket", default="tributary_cdc_schemas")
    p.add_argument("--count", type=int, default=0, help="stop after N events (0: run forever)")
    p.add_argument("--timeout", type=float, default=30, help="give up after N idle seconds")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
