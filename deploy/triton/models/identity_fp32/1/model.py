"""Echoes the FP32 input tensor: the python backend's smallest end-to-end proof."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            # DLPack hands the input buffer over without a numpy round trip (the numpy
            # path has returned empty outputs on GPU hosts).
            out = pb_utils.Tensor.from_dlpack("OUTPUT0", tensor.to_dlpack())
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
