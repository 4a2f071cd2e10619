"""The stride of every model's heatmaps: input pixels per heatmap pixel. A leaf module (it imports
nothing), so the config, the codecs and the models all read the one value without importing each
other. Not a setting: the former ``target.stride`` had this one legal value."""

#: input pixels per heatmap pixel (:mod:`heatmapnet.models` builds its heads to it)
OUTPUT_STRIDE = 4
