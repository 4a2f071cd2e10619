"""Deployment: an exported ONNX model run by onnxruntime, and prediction over folders and videos.

Everything in this package runs on onnxruntime, numpy and OpenCV alone: it never imports torch,
timm or the config machinery, so a deployment install needs only those three (and heatmapnet
itself, ``pip install --no-deps``). The PyTorch side of prediction (:class:`heatmapnet.predict.
Predictor`) shares its torch-free parts from here, so both backends frame images, check boxes,
write results and draw them with the same code:

====================  ========================================================================
module                job
====================  ========================================================================
``modes``             each data mode's torch-free half: outputs, framing, json entry, drawing
``metadata``          what an exported file says about itself (its ``metadata_props``)
``framing``           images and boxes -> network inputs and the matrices back to the image
``results``           one image's decoded keypoints -> its json entry, per data mode
``runtime``           :class:`OnnxPredictor`: images -> json entries through onnxruntime
``sources``           the inputs of ``predict``: image files, folders, a video; boxes files
``render``            one image's json entry drawn on it
``runner``            ``predict`` over many inputs: batches, progress, json, rendering
``output``            the json written entry by entry (a folder's or video's, in flat memory)
``cli``               ``python -m heatmapnet.deploy predict``: the same command without torch
====================  ========================================================================
"""
