#!/usr/bin/env python3
"""Generates protocol-kafka/src/shapes.rs: the wire shape of every Kafka request, from Kafka's
JSON message schemas, for the bounds pre-check (protocol-kafka/src/precheck.rs).

The schemas ship inside the kafka-clients jar (common/message/*Request.json, plus
RequestHeader.json). The jar version must match the schemas the `kafka-protocol` crate was
generated from (Kafka 4.1); the test `shapes_match_kafka_protocol_versions` fails otherwise.

Rerun (from the repository root):

    cd /tmp && mvn -q dependency:copy -Dartifact=org.apache.kafka:kafka-clients:4.1.1 \
        -DoutputDirectory=/tmp/mvn
    python3 protocol-kafka/generate/shapes.py /tmp/mvn/kafka-clients-4.1.1.jar \
        > protocol-kafka/src/shapes.rs
    rustfmt --edition 2021 protocol-kafka/src/shapes.rs

Like the `kafka-protocol` crate, a request's newest version is left out when its schema says
`latestVersionUnstable` (an API with only an unstable version is left out whole), so that the
pre-check accepts exactly the versions the decoder has.
"""

import json
import re
import sys
import zipfile

JAR_VERSION_PATTERN = re.compile(r"kafka-clients-([0-9][^/]*)\.jar$")
VERSION_MAX = 32767  # i16::MAX: "N+" means every version from N on.

SCALARS = {
    "bool": "Bool",
    "int8": "Int8",
    "int16": "Int16",
    "uint16": "Uint16",
    "int32": "Int32",
    "int64": "Int64",
    "float64": "Float64",
    "uuid": "Uuid",
    "string": "String",
    "bytes": "Bytes",
    "records": "Records",
}


def strip_comments(text):
    """Kafka's schema files are JSON with `//` line comments."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def parse_versions(text):
    """'none' -> empty; 'N' -> N..=N; 'N+' -> N..=MAX; 'N-M' -> N..=M."""
    if text is None or text == "none":
        return None
    if text.endswith("+"):
        return (int(text[:-1]), VERSION_MAX)
    if "-" in text:
        low, high = text.split("-")
        return (int(low), int(high))
    return (int(text), int(text))


def versions_rust(versions):
    if versions is None:
        return "NONE"
    low, high = versions
    return f"V({low}, {'MAX' if high == VERSION_MAX else high})"


def screaming(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


class Generator:
    def __init__(self):
        self.shapes = []  # (static name, [field rust])

    def shape(self, message, struct_name, fields, common):
        static = f"{screaming(message)}_{screaming(struct_name)}" if struct_name else screaming(message)
        rows = []
        # Reserve the slot first so that a shape's nested shapes follow it in the file.
        index = len(self.shapes)
        self.shapes.append(None)
        for field in fields:
            rows.append(self.field(message, field, common))
        self.shapes[index] = (static, rows)
        return static

    def kind(self, message, type_name, field, common):
        if type_name.startswith("[]"):
            return f"Array(&{self.kind(message, type_name[2:], field, common)})"
        if type_name in SCALARS:
            return SCALARS[type_name]
        if "fields" in field:
            return f"Struct(&{self.shape(message, type_name, field['fields'], common)})"
        if type_name in common:
            static = common[type_name]
            if static is None:
                static = self.shape(message, type_name, common_fields[message][type_name], common)
                common[type_name] = static
            return f"Struct(&{static})"
        raise SystemExit(f"{message}: unknown type {type_name}")

    def field(self, message, field, common):
        kind = self.kind(message, field["type"], field, common)
        versions = parse_versions(field["versions"])
        nullable = parse_versions(field.get("nullableVersions"))
        text = f'field("{field["name"]}", {kind}, {versions_rust(versions)}, {versions_rust(nullable)})'
        if "tag" in field:
            tagged = parse_versions(field.get("taggedVersions"))
            text += f".tagged({int(field['tag'])}, {versions_rust(tagged)})"
        if "flexibleVersions" in field:
            text += f".flexible({versions_rust(parse_versions(field['flexibleVersions']))})"
        return text


common_fields = {}


def main():
    jar_path = sys.argv[1]
    match = JAR_VERSION_PATTERN.search(jar_path)
    jar_version = match.group(1) if match else "unknown"
    generator = Generator()
    requests = []
    with zipfile.ZipFile(jar_path) as jar:
        names = sorted(
            name
            for name in jar.namelist()
            if name.startswith("common/message/")
            and (name.endswith("Request.json") or name.endswith("RequestHeader.json"))
        )
        schemas = [json.loads(strip_comments(jar.read(name).decode())) for name in names]
    header = None
    for schema in schemas:
        name = schema["name"]
        valid = parse_versions(schema["validVersions"])
        if valid is None:
            continue  # removed APIs (LeaderAndIsr, ...): no version to serve
        if schema.get("latestVersionUnstable"):
            low, high = valid
            if low == high:
                continue
            valid = (low, high - 1)
        common_fields[name] = {c["name"]: c["fields"] for c in schema.get("commonStructs", [])}
        common = {c: None for c in common_fields[name]}
        static = generator.shape(name, None, schema.get("fields", []), common)
        flexible = versions_rust(parse_versions(schema.get("flexibleVersions")))
        if schema["type"] == "header":
            header = (static, versions_rust(valid), flexible)
        else:
            requests.append((schema["apiKey"], name, versions_rust(valid), flexible, static))
    requests.sort()

    out = []
    out.append(
        f"""//! GENERATED by `protocol-kafka/generate/shapes.py` from Kafka {jar_version}'s message schemas
//! (`kafka-clients-{jar_version}.jar`, `common/message/*Request.json` and `RequestHeader.json`):
//! the wire shape of every request the `kafka-protocol` crate decodes, for the bounds pre-check
//! (`precheck.rs`). Do not edit by hand; rerun the generator (see its header).

use crate::shape::{{field, Kind::*, RequestShape, Shape, Versions as V, MAX, NONE}};

/// The request header (versions 1 and 2; 2 is flexible but its client id is not compact).
pub(crate) static HEADER: RequestShape = RequestShape {{
    api_key: -1,
    name: "RequestHeader",
    versions: {header[1]},
    flexible: {header[2]},
    body: &{header[0]},
}};

/// Every request, by API key.
pub(crate) static REQUESTS: &[RequestShape] = &["""
    )
    for api_key, name, valid, flexible, static in requests:
        out.append(
            f'    RequestShape {{ api_key: {api_key}, name: "{name}", versions: {valid}, '
            f"flexible: {flexible}, body: &{static} }},"
        )
    out.append("];\n")
    for static, rows in generator.shapes:
        body = "".join(f"        {row},\n" for row in rows)
        out.append(
            f"static {static}: Shape = Shape {{\n    fields: &[\n{body}    ],\n}};\n"
        )
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
