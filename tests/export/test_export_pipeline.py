"""The export library driven by typed options, without a command line."""
import onnx

from densemtl_core.export.pipeline import OnnxExportOptions, check_export, export_checkpoint


def test_export_options_write_a_checked_onnx_file(tmp_path, two_task_checkpoint):
    options = OnnxExportOptions(checkpoint=two_task_checkpoint, onnx=tmp_path / "m.onnx",
                                input_size=(32, 48), validate_frames=2)
    exported = export_checkpoint(options)
    assert exported.path == options.onnx and exported.path.is_file()
    assert exported.info.input_size == (32, 48) and not exported.info.dynamic_batch
    assert exported.info.tasks == ("semseg", "depth")
    assert "Conv" in exported.operators

    proto = onnx.load(exported.path)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 48]
    assert [o.name for o in proto.graph.output] == ["semseg", "depth"]

    differences = check_export(exported, options.validate_frames)
    assert list(differences) == ["semseg", "depth"]
    assert all(difference.within_tolerance for difference in differences.values())
