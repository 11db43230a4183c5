"""Errors every implementation raises, each with a language-neutral code (spec clause HSER-10.1).

The code (e.g. ``E_NONFINITE``) is what conformance cases compare; the message is for people and
names the offending value, position or file.
"""
from __future__ import annotations


class LiteLLMError(ValueError):
    """Base class: ``code`` is the stable error code, ``clause`` the spec clause that was violated."""

    code = "E_LITE_LLM"
    clause = ""

    def __init__(self, message: str, *, clause: str | None = None):
        if clause is not None:
            self.clause = clause
        self.message = message       # the problem alone, without the code and clause prefix
        super().__init__(f"{self.code} [{self.clause}]: {message}" if self.clause else f"{self.code}: {message}")


class ConfigError(LiteLLMError):
    """A model/router configuration violates the config schema or a limit of the spec."""

    code = "E_CONFIG"
    clause = "TIER-1.1"


class ShapeError(LiteLLMError):
    """An input tensor has the wrong number of dimensions or the wrong size."""

    code = "E_SHAPE"
    clause = "HSER-1.1"


class DTypeError(LiteLLMError):
    """An input tensor is not of a floating-point type the spec accepts."""

    code = "E_DTYPE"
    clause = "HSER-1.2"


class NonFiniteError(LiteLLMError):
    """An input holds NaN or an infinity."""

    code = "E_NONFINITE"
    clause = "HSER-1.3"


class UnknownTierError(LiteLLMError):
    """A TierSet names a tier that the model does not have."""

    code = "E_UNKNOWN_TIER"
    clause = "TIER-2.2"


class EmptyTierSetError(LiteLLMError):
    """A TierSet holds no tier."""

    code = "E_EMPTY_TIERSET"
    clause = "TIER-2.3"


class DuplicateTierError(LiteLLMError):
    """A TierSet names the same tier twice."""

    code = "E_DUPLICATE_TIER"
    clause = "TIER-2.4"


class RouterWeightsError(LiteLLMError):
    """Router weights do not match the configuration (shape) or hold non-finite values."""

    code = "E_WEIGHTS"
    clause = "HSER-1.4"


class SeedError(LiteLLMError):
    """A routing seed is not an integer in [0, 2**64)."""

    code = "E_SEED"
    clause = "HSER-4.1"


class TokenError(LiteLLMError):
    """Token ids of the wrong rank or type, an id outside [0, vocab_size), or a sequence longer than max_seq_len."""

    code = "E_TOKEN"
    clause = "MODEL-1.1"


class BudgetError(LiteLLMError):
    """Budget-constrained TierSet selection has bad inputs or no tier fits the limits."""

    code = "E_BUDGET"
    clause = "SEL-1.1"


class CheckpointError(LiteLLMError):
    """A checkpoint is missing, truncated, corrupt, schema-invalid or does not match its manifest (CKPT-7.1).

    ``path`` names the file at fault (the manifest, a shard, or the checkpoint directory). The
    subclasses below carry one code per problem; catch ``CheckpointError`` for all of them.
    """

    code = "E_CHECKPOINT"
    clause = "CKPT-7.1"

    def __init__(self, message: str, *, path: str = "", clause: str | None = None):
        self.path = str(path)        # the file at fault
        self.problem = message       # what is wrong, without code or path
        super().__init__(f"{path}: {message}" if path else message, clause=clause)


class CheckpointMissingError(CheckpointError):
    """The checkpoint directory, its manifest or a shard it needs does not exist."""

    code = "E_CKPT_MISSING"
    clause = "CKPT-5.4"


class CheckpointTruncatedError(CheckpointError):
    """A shard is shorter than its manifest records, or than its own header says."""

    code = "E_CKPT_TRUNCATED"
    clause = "CKPT-5.4"


class CheckpointHashError(CheckpointError):
    """A shard's SHA-256 differs from the one its manifest records."""

    code = "E_CKPT_HASH"
    clause = "CKPT-5.5"


class CheckpointHeaderError(CheckpointError):
    """A shard's safetensors header is malformed (not JSON, bad dtype, overlapping or gapped data)."""

    code = "E_CKPT_HEADER"
    clause = "CKPT-2.3"


class CheckpointSchemaError(CheckpointError):
    """The manifest is not JSON, fails the manifest schema, has an unknown schema version or an invalid config."""

    code = "E_CKPT_SCHEMA"
    clause = "CKPT-3.1"


class CheckpointMismatchError(CheckpointError):
    """Manifest, config, shards and weights disagree: a tensor missing or extra, a wrong shape, dtype or size."""

    code = "E_CKPT_MISMATCH"
    clause = "CKPT-3.5"


class CheckpointExistsError(CheckpointError):
    """A new checkpoint would be saved into a directory that already holds one."""

    code = "E_CKPT_EXISTS"
    clause = "CKPT-4.4"


class CheckpointTierExistsError(CheckpointError):
    """Expansion would add a tier whose name the checkpoint already has."""

    code = "E_CKPT_TIER_EXISTS"
    clause = "EXP-1.6"


class CheckpointConflictError(CheckpointError):
    """Another writer changed the manifest since this writer (or its caller) read it; this write is not committed."""

    code = "E_CKPT_CONFLICT"
    clause = "CKPT-4.7"


CHECKPOINT_ERRORS = (CheckpointError, CheckpointMissingError, CheckpointTruncatedError, CheckpointHashError,
                     CheckpointHeaderError, CheckpointSchemaError, CheckpointMismatchError, CheckpointExistsError,
                     CheckpointTierExistsError, CheckpointConflictError)


ERROR_CODES = {cls.code: cls for cls in (
    ConfigError, ShapeError, DTypeError, NonFiniteError, UnknownTierError, EmptyTierSetError,
    DuplicateTierError, RouterWeightsError, SeedError, TokenError, BudgetError, *CHECKPOINT_ERRORS,
)}
