"""Reads OTLP/HTTP JSON bodies (one file each argument) as the protocol's own
ExportTraceServiceRequest, by the published definitions (the opentelemetry-proto package), and
fails on anything that does not fit them: an unknown field, a value of the wrong type, a span kind
or status code the protocol does not have, an id of the wrong length. Prints the spans read."""

import base64
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

ID_BYTES = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def ids_as_base64(node):
    """OTLP's JSON writes ids in hex where proto3's JSON mapping has base64 (the one difference
    the specification makes); turned back here so the stock parser reads the rest strictly."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_BYTES and isinstance(value, str):
                raw = bytes.fromhex(value)
                if len(raw) != ID_BYTES[key] or value != value.lower():
                    raise SystemExit(f"{key} {value!r}: expected {ID_BYTES[key]} bytes in lower-case hex")
                node[key] = base64.b64encode(raw).decode()
            else:
                ids_as_base64(value)
    elif isinstance(node, list):
        for value in node:
            ids_as_base64(value)


spans = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    ids_as_base64(doc)
    request = json_format.ParseDict(doc, ExportTraceServiceRequest())
    for resource_spans in request.resource_spans:
        names = {a.key for a in resource_spans.resource.attributes}
        assert "service.name" in names, f"{path}: the resource has no service.name"
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                assert span.name, f"{path}: a span without a name"
                assert span.kind in (Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_SERVER,
                                     Span.SPAN_KIND_CLIENT), f"{span.name}: kind {span.kind}"
                assert span.status.code in (Status.STATUS_CODE_UNSET, Status.STATUS_CODE_ERROR)
                assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano, span.name
                spans += 1
print(f"{spans} spans read as ExportTraceServiceRequest")
