"""The structural checks after every pass of compiler/pipeline.PASSES, as a `run_passes` hook
(`after_pass`): builtin ops only, the signature contract, the base's tensors unchanged, the
metadata record written once. Each check runs as soon as the passes have made what it applies
to (a cut base, a converted head, a fused model, the final bytes), so a broken graph is caught
by the pass that broke it, not at the end. tests/helpers.compile_model installs it in every
compile the tests make.
"""

from __future__ import annotations

import dataclasses

from tflite_transfer.compiler.errors import VerificationError


@dataclasses.dataclass
class PassChecks:
    """The hook, and what it checked after which pass (pass name -> check names)."""
    base: object                                   # the BaseSource the compile started from
    checked: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def __call__(self, step, build) -> None:
        try:
            self.checked[step.name] = self._check(build)
        except VerificationError as error:
            raise VerificationError(f"after the pass '{step.name}': {error}") from None

    def _check(self, build) -> list[str]:
        from tflite_transfer.compiler.checks import audit
        from tflite_transfer.compiler.flatbuffer import model_io
        from tflite_transfer.compiler.head import training_graph
        from tflite_transfer.runtime import contract
        from tflite_transfer.runtime.interpreter import read_metadata

        done = []
        base, prepared = self.base, build.prepared
        if prepared is not None and build.fused is None:
            audit.audit_ops(prepared.model)
            audit.check_base_preserved(base.model, prepared.entry_subgraph, prepared.model, prepared.entry_subgraph,
                                       prepared.kept_tensor_count, base.source)
            done += ["cut base: op audit", "cut base: base preserved"]
        if build.head is not None and build.fused is None:
            head = model_io.read_model_bytes(build.head.tflite, "head")
            audit.audit_ops(head)
            # The head's signatures are the contract's, but its infer takes the bottleneck (fuse
            # puts the base in front of it).
            # A stateful base's variables join save/restore only when fused (passes/base_state.py).
            base_state = {entry.name for entry in build.metadata.entries_with_role(contract.BASE_STATE)}
            # The converted head speaks the contract's default names; fuse gives the signatures the
            # model's own (contract version 3: metadata `names`).
            head_names = contract.TensorNames.fixed(
                contract.PREDICTIONS if build.metadata.label.kind == "targets" else contract.PROBABILITIES)
            specs = {key: spec for key, spec in contract.signature_specs(head_names, build.metadata.state_names).items()
                     if key in training_graph.HEAD_SIGNATURES}
            specs[contract.INFER] = dataclasses.replace(specs[contract.INFER], inputs=(contract.BOTTLENECK,))
            for key in (contract.SAVE, contract.RESTORE):
                specs[key] = dataclasses.replace(
                    specs[key], inputs=tuple(n for n in specs[key].inputs if n not in base_state),
                    outputs=tuple(n for n in specs[key].outputs if n not in base_state))
            _check_signatures(head, specs)
            done += ["head: op audit", "head: signature contract"]
        if build.fused is None:
            return done
        final = build.model_bytes is not None
        model = model_io.read_model_bytes(build.model_bytes, "compiled model") if final else build.fused.model
        audit.audit_ops(model)
        audit.check_contract(model, build.metadata.signatures)
        done += ["op audit", "signature contract"]
        if build.batch is None or not build.batch.base_rewritten:  # a rewrite is proved by batch_check
            fixed = build.batch.image_batch if build.batch is not None else None
            audit.check_base_preserved(base.model, prepared.entry_subgraph, model, build.fused.base_subgraph,
                                       prepared.kept_tensor_count, base.source, fixed_batch=fixed)
            done.append("base preserved")
        entries = [e for e in model.metadata or [] if e.name.decode() == contract.METADATA_KEY]
        if not final and entries:
            raise VerificationError("the contract metadata was written before the final bytes (one writer: serialize)")
        if final:
            written = read_metadata(build.model_bytes, "compiled model")
            as_built = written.to_json().replace(written.model_digest, contract.DIGEST_PLACEHOLDER)
            if len(entries) != 1 or as_built != build.metadata.to_json():
                raise VerificationError("the metadata written differs from the pipeline's record")
            if contract.digest_matches(build.model_bytes) is not True:
                raise VerificationError("the model digest does not match the bytes")
            done += ["metadata written once", "model digest"]
        return done


def _check_signatures(model, specs) -> None:
    found = {s.signatureKey.decode(): (sorted(t.name.decode() for t in s.inputs or []),
                                       sorted(t.name.decode() for t in s.outputs or []))
             for s in model.signatureDefs or []}
    expected = {key: (sorted(spec.inputs), sorted(spec.outputs)) for key, spec in specs.items()}
    if found != expected:
        raise VerificationError(f"signatures {found} differ from the contract's {expected}")
