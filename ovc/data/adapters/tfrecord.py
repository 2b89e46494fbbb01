"""TFRecord files of ``tf.train.Example`` / ``tf.train.SequenceExample`` protos, read without TensorFlow.

YouTube-8M ships its labels only inside TFRecords (video level: ``Example`` with features ``id``
(bytes), ``labels`` (int64 list), ``mean_rgb``, ``mean_audio``; frame level and Segments:
``SequenceExample`` whose *context* holds ``id``, ``labels`` or ``segment_labels``,
``segment_start_times``, ``segment_scores`` — see google/youtube-8m ``readers.py``,
``YT8MAggregatedFeatureReader`` / ``YT8MFrameFeatureReader``). Installing TensorFlow to read a few
label lists is heavy, so this module decodes the two formats directly:

* TFRecord framing (TensorFlow ``core/lib/io/record_writer.cc``): per record
  ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``, little endian;
  masked crc = ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2^32).
* protobuf wire format of ``tensorflow/core/example/{example,feature}.proto``::

      Example         { Features features = 1; }
      SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
      Features        { map<string, Feature> feature = 1; }      // map entry: key = 1, value = 2
      Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
      *List           { repeated <type> value = 1; }             // packed or not

Only ``Features`` (an Example's features, a SequenceExample's context) are decoded; feature lists
(per-frame features) are skipped without decoding. The length CRC of every record is always checked
(a cheap guard against a corrupt or non-TFRecord file); the data CRC only with ``verify_data=True``
(pure-Python CRC32C is slow on multi-GB feature files and labels do not need it).

    for features in read_tfrecord_features("train0000.tfrecord"):
        features["id"], features["labels"]        # [b'nXSc'], [1, 522, 11]
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

FeatureValue = list  # list[bytes] | list[float] | list[int]


class TFRecordError(ValueError):
    """A TFRecord file or proto that cannot be decoded; the message names the file and record."""


# --------------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), as TFRecord uses
# --------------------------------------------------------------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------------
# Record framing
# --------------------------------------------------------------------------------------------------
def iter_tfrecords(path: str | os.PathLike, verify_data: bool = False) -> Iterator[bytes]:
    """Yield the raw records of a TFRecord file (uncompressed).

    Raises:
        TFRecordError: truncated file, bad length CRC (not a TFRecord), or bad data CRC when verified.
    """
    path = Path(path)
    with open(path, "rb") as f:
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise TFRecordError(f"{path}: record {index}: truncated header")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(f"{path}: record {index}: bad length checksum (not an uncompressed TFRecord file?)")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise TFRecordError(f"{path}: record {index}: truncated data")
            if verify_data and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise TFRecordError(f"{path}: record {index}: bad data checksum")
            yield data
            index += 1


def write_tfrecords(path: str | os.PathLike, records: Sequence[bytes]) -> None:
    """Write records as an uncompressed TFRecord file (with both CRCs); used to build test fixtures."""
    with open(path, "wb") as f:
        for data in records:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data)))


# --------------------------------------------------------------------------------------------------
# protobuf wire format (just what Example/SequenceExample need)
# --------------------------------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFRecordError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) of a message: ints for varint/fixed, bytes for LEN
    (the wire type tells which, so the value is typed ``Any`` for the callers that dispatch on it)."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > n:
                raise TFRecordError("truncated length-delimited field")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise TFRecordError(f"unsupported wire type {wire}")
        yield field, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _decode_feature(buf: bytes) -> FeatureValue:
    for kind, _, payload in _fields(buf):
        values: list = []
        for field, wire, v in _fields(payload):  # the *List message
            if field != 1:
                continue
            if kind == 1:  # bytes_list
                values.append(bytes(v))
            elif kind == 2:  # float_list: packed (LEN) or one fixed32
                if wire == 2:
                    values.extend(struct.unpack(f"<{len(v) // 4}f", v))
                else:
                    values.append(struct.unpack("<f", struct.pack("<I", v))[0])
            elif kind == 3:  # int64_list: packed (LEN of varints) or one varint
                if wire == 2:
                    pos = 0
                    while pos < len(v):
                        x, pos = _varint(v, pos)
                        values.append(_signed64(x))
                else:
                    values.append(_signed64(v))
        return values
    return []  # a Feature with no kind set


def decode_features(buf: bytes) -> dict[str, FeatureValue]:
    """A serialized ``Features`` message -> {name: values}."""
    out: dict[str, FeatureValue] = {}
    for field, _, entry in _fields(buf):
        if field != 1:
            continue
        key, value = "", b""
        for f, _, v in _fields(entry):
            if f == 1:
                key = bytes(v).decode("utf-8")
            elif f == 2:
                value = v
        out[key] = _decode_feature(value)
    return out


def decode_example(buf: bytes) -> dict[str, FeatureValue]:
    """``tf.train.Example`` -> its features; ``tf.train.SequenceExample`` -> its context (both are
    field 1; a SequenceExample's feature lists, field 2, are skipped)."""
    for field, _, v in _fields(buf):
        if field == 1:
            return decode_features(v)
    return {}


def read_tfrecord_features(path: str | os.PathLike, verify_data: bool = False) -> Iterator[dict[str, FeatureValue]]:
    """Decoded features (or SequenceExample context) of every record of a TFRecord file."""
    for i, record in enumerate(iter_tfrecords(path, verify_data=verify_data)):
        try:
            yield decode_example(record)
        except (TFRecordError, struct.error, UnicodeDecodeError) as e:
            raise TFRecordError(f"{path}: record {i}: not a tf.train.Example/SequenceExample ({e})") from None


# --------------------------------------------------------------------------------------------------
# Encoding (test fixtures in the real format)
# --------------------------------------------------------------------------------------------------
def _enc_varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _enc_len(field: int, payload: bytes) -> bytes:
    return _enc_varint(field << 3 | 2) + _enc_varint(len(payload)) + payload


def _encode_feature(values: Sequence) -> bytes:
    if values and isinstance(values[0], (bytes, str)):
        body = b"".join(_enc_len(1, v.encode() if isinstance(v, str) else v) for v in values)
        return _enc_len(1, body)
    if values and isinstance(values[0], float):
        return _enc_len(2, _enc_len(1, struct.pack(f"<{len(values)}f", *values)))
    return _enc_len(3, _enc_len(1, b"".join(_enc_varint(int(v)) for v in values)))


def encode_features(features: Mapping[str, Sequence]) -> bytes:
    """{name: list of bytes/str | float | int} -> serialized ``Features``."""
    return b"".join(
        _enc_len(1, _enc_len(1, name.encode()) + _enc_len(2, _encode_feature(list(values))))
        for name, values in features.items()
    )


def encode_example(features: Mapping[str, Sequence]) -> bytes:
    """Serialized ``tf.train.Example``."""
    return _enc_len(1, encode_features(features))


def encode_sequence_example(
    context: Mapping[str, Sequence], frame_features: Mapping[str, Sequence[bytes]] | None = None
) -> bytes:
    """Serialized ``tf.train.SequenceExample`` (context + optional bytes feature lists, e.g. ``rgb``)."""
    out = _enc_len(1, encode_features(context))
    if frame_features:
        lists = b""
        for name, frames in frame_features.items():
            flist = b"".join(_enc_len(1, _encode_feature([f])) for f in frames)  # FeatureList.feature
            lists += _enc_len(1, _enc_len(1, name.encode()) + _enc_len(2, flist))
        out += _enc_len(2, lists)
    return out
