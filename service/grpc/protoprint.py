"""A FileDescriptorProto as .proto source: how service/grpc/*.proto are made from the descriptors that Triton's
client ships (`tritonclient.grpc.service_pb2`, `model_config_pb2`), since its wheel carries no .proto files.

Covers what those files use (proto3 messages, nested messages and enums, maps, oneofs, streaming methods);
anything else raises, so a new construct in a later release is seen, not dropped. Comments are not in a
descriptor and so are not reproduced.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    F.TYPE_DOUBLE: "double",
    F.TYPE_FLOAT: "float",
    F.TYPE_INT64: "int64",
    F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32",
    F.TYPE_FIXED64: "fixed64",
    F.TYPE_FIXED32: "fixed32",
    F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes",
    F.TYPE_UINT32: "uint32",
    F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64",
    F.TYPE_SINT32: "sint32",
    F.TYPE_SINT64: "sint64",
}


def proto_text(file: descriptor_pb2.FileDescriptorProto, header: str) -> str:
    """The .proto source of `file`, with `header` (comment lines) on top."""
    if file.syntax != "proto3" or file.extension or file.public_dependency or file.options.ByteSize():
        raise ValueError(f"{file.name}: a construct protoprint does not render")
    lines = [*header.rstrip("\n").split("\n"), "", 'syntax = "proto3";', "", f"package {file.package};", ""]
    lines += [f'import "{dep}";' for dep in file.dependency]
    if file.dependency:
        lines.append("")
    scope = f".{file.package}"
    for service in file.service:
        lines.append(f"service {service.name}")
        lines.append("{")
        for m in service.method:
            arg = ("stream " if m.client_streaming else "") + _relative(m.input_type, scope)
            out = ("stream " if m.server_streaming else "") + _relative(m.output_type, scope)
            lines.append(f"  rpc {m.name}({arg}) returns ({out}) {{}}")
        lines += ["}", ""]
    for enum in file.enum_type:
        lines += _enum(enum, "")
        lines.append("")
    for message in file.message_type:
        lines += _message(message, "", scope)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _relative(type_name: str, scope: str) -> str:
    """A type name as written inside the file's package (protoc resolves it back to the same full name)."""
    return type_name[len(scope) + 1 :] if type_name.startswith(scope + ".") else type_name


def _enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    if enum.options.ByteSize() or enum.reserved_range or enum.reserved_name:
        raise ValueError(f"enum {enum.name}: a construct protoprint does not render")
    body = [f"{indent}  {v.name} = {v.number};" for v in enum.value]
    return [f"{indent}enum {enum.name}", f"{indent}{{", *body, f"{indent}}}"]


def _message(message: descriptor_pb2.DescriptorProto, indent: str, scope: str) -> list[str]:
    if message.extension or message.extension_range or message.reserved_range or message.reserved_name:
        raise ValueError(f"message {message.name}: a construct protoprint does not render")
    full = f"{scope}.{message.name}"
    maps = {f"{full}.{n.name}": n for n in message.nested_type if n.options.map_entry}
    lines = [f"{indent}message {message.name}", f"{indent}{{"]
    inner = indent + "  "
    for enum in message.enum_type:
        lines += _enum(enum, inner)
    for nested in message.nested_type:
        if not nested.options.map_entry:
            lines += _message(nested, inner, full)
    done_oneofs: set[int] = set()
    for field in message.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            if field.oneof_index in done_oneofs:
                continue
            done_oneofs.add(field.oneof_index)
            members = [f for f in message.field if f.HasField("oneof_index") and f.oneof_index == field.oneof_index]
            lines.append(f"{inner}oneof {message.oneof_decl[field.oneof_index].name}")
            lines.append(f"{inner}{{")
            lines += [f"{inner}  {_field(f, maps)}" for f in members]
            lines.append(f"{inner}}}")
            continue
        lines.append(f"{inner}{_field(field, maps)}")
    lines.append(f"{indent}}}")
    return lines


def _type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    """Scalars by name; messages and enums fully qualified (`.inference.ModelConfig`), always unambiguous."""
    if field.type in _SCALARS:
        return _SCALARS[field.type]
    if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
        return field.type_name
    raise ValueError(f"field {field.name}: type {field.type} not rendered")


def _field(field: descriptor_pb2.FieldDescriptorProto, maps: dict[str, descriptor_pb2.DescriptorProto]) -> str:
    if field.options.ByteSize() or field.HasField("default_value") or field.HasField("extendee"):
        raise ValueError(f"field {field.name}: a construct protoprint does not render")
    if field.type == F.TYPE_MESSAGE and field.type_name in maps:
        key, value = maps[field.type_name].field
        return f"map<{_type(key)}, {_type(value)}> {field.name} = {field.number};"
    label = ""
    if field.label == F.LABEL_REPEATED:
        label = "repeated "
    elif field.proto3_optional:
        label = "optional "
    return f"{label}{_type(field)} {field.name} = {field.number};"
