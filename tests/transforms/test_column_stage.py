"""The column-stage base and the two ciphers of ``encrypt``: the same stages, one column walk, and
copies (pickles, as the Dask engine sends them) that keep working without carrying cipher objects
or per-file data keys."""

from __future__ import annotations

import pickle

import pyarrow as pa
from nacl.public import PrivateKey

from privprep.schemas.keyring import SecretKey
from privprep.transforms import Encrypt, Mask, Pseudonymize, Tokenize, decrypt_column, detokenize_column
from privprep.transforms.column_stage import ColumnStage, KeyedColumnStage
from privprep.transforms.encrypt import KeyedCipher, SealedCipher
from privprep.transforms.recipient import RecipientKey

ENC = SecretKey(id="enc-1", purpose="encrypt", material=bytes(range(32)))
TOK = SecretKey(id="tok-1", purpose="tokenize", material=bytes(range(64)))


def test_the_column_stages_share_one_base() -> None:
    assert all(issubclass(c, KeyedColumnStage) for c in (Pseudonymize, Tokenize))
    assert all(issubclass(c, ColumnStage) for c in (Encrypt, Mask))
    assert Pseudonymize(key=b"k" * 32).key.id == "inline" and Pseudonymize(key=b"k" * 32).key.purpose == "pseudonymize"


def test_a_keyed_encrypt_uses_the_keyed_cipher_and_survives_a_pickle() -> None:
    stage = pickle.loads(pickle.dumps(Encrypt(columns=["dx"], key=ENC)))
    assert isinstance(stage.cipher, KeyedCipher) and not stage.per_file and stage.begin_file() == {}
    out = stage.apply(pa.table({"dx": ["flu", None]})).column("dx")
    assert out[0].as_py()[:7] == b"\x01\x05enc-1"
    assert decrypt_column(out, column="dx", keys=ENC, original_type=pa.string()).to_pylist() == ["flu", None]


def test_a_sealed_encrypt_seals_a_data_key_per_file_and_a_pickle_carries_none() -> None:
    private = PrivateKey.generate()
    stage = Encrypt(columns=["dx"], recipient=RecipientKey(id="analyst-1", public=bytes(private.public_key)))
    assert isinstance(stage.cipher, SealedCipher) and stage.per_file and stage.keys_used() == ["analyst-1"]
    first = stage.begin_file()
    assert list(first) == ["privprep.sealed_key.dx"] and stage.file_metadata() == first
    copy = pickle.loads(pickle.dumps(stage))
    assert copy.file_metadata() == {} and copy.cipher.aead is None  # the data key never travels
    out = stage.apply(pa.table({"dx": ["flu"]})).column("dx")
    assert out[0].as_py()[:11] == b"\x02\x09analyst-1"
    ring = SecretKey(id="analyst-1", purpose="recipient", material=bytes(private))
    back = decrypt_column(out, column="dx", keys=ring, original_type=pa.string(), file_metadata=first)
    assert back.to_pylist() == ["flu"]
    assert stage.begin_file() != first  # a fresh data key for the next file


def test_a_tokenizer_copy_rebuilds_its_cipher() -> None:
    stage = pickle.loads(pickle.dumps(Tokenize(columns=["id"], domain="d", key=TOK)))
    out = stage.apply(pa.table({"id": ["a", "a"]})).column("id")
    assert detokenize_column(out, domain="d", keys=TOK, original_type=pa.string()).to_pylist() == ["a", "a"]


def test_a_used_pseudonymizer_pickles_and_its_copy_gives_the_same_pseudonyms() -> None:
    stage = Pseudonymize(columns=["id"], domain="d", key=b"k" * 32)
    first = stage.apply(pa.table({"id": ["a"]})).column("id").to_pylist()  # its hash states are cached now
    copy = pickle.loads(pickle.dumps(stage))
    assert copy.apply(pa.table({"id": ["a"]})).column("id").to_pylist() == first
