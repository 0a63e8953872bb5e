from tests.runtime.tiny_models import (four_task_checkpoint, four_task_onnx,  # noqa: F401
                                       one_torch_thread, two_task_checkpoint)
