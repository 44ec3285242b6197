"""Kafka security and size settings reach every client."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

from pydantic import SecretStr

from services.common.config import KafkaSettings
from services.common.kafka.clients import common_options, make_consumer, make_producer


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=arcstream-test",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_sasl_ssl_settings_are_passed_through(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="arc",
        sasl_plain_password=SecretStr("s3cret"),
        ssl_cafile=cert,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )
    options = common_options(kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("arc", "s3cret")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert "s3cret" not in repr(kafka)


def test_plaintext_has_no_tls_and_clients_get_the_size_limits() -> None:
    kafka = KafkaSettings(max_request_size=33_554_432, max_partition_fetch_bytes=40_000_000)
    assert common_options(kafka)["ssl_context"] is None

    async def built() -> tuple[int, int]:
        producer = make_producer(kafka)
        consumer = make_consumer(kafka, ["t"], group_id="g")
        sizes = (producer._max_request_size, consumer._max_partition_fetch_bytes)
        await producer.stop()
        await consumer.stop()
        return sizes

    assert asyncio.run(built()) == (33_554_432, 40_000_000)
