"""Holds a known amount of memory and takes a known time to load; answers y = x."""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        megabytes = int(parameters["megabytes"]["string_value"])
        self.ballast = np.ones(megabytes << 20, dtype=np.uint8)  # ones, so every page is resident
        time.sleep(float(parameters["seconds"]["string_value"]))

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
