"""Models: any timm backbone by name, heads at stride 4, prior bias, local pretrained weights."""
import pytest
import timm
import torch

from heatmapnet.models import HEADS, build_model


@pytest.mark.parametrize("head", sorted(HEADS))
def test_heads_predict_one_stride_4_map_per_keypoint(head):
    model = build_model(backbone="mobilenetv3_small_100", head=head, num_keypoints=5)
    assert model(torch.randn(2, 3, 96, 64)).shape == (2, 5, 24, 16)


def test_sigmoid_heads_start_at_the_retinanet_prior_and_regression_heads_at_zero():
    focal = build_model(backbone="mobilenetv3_small_100", num_keypoints=3, sigmoid_prior=0.1)
    mse = build_model(backbone="mobilenetv3_small_100", num_keypoints=3)
    with torch.no_grad():
        focal_out = torch.sigmoid(focal.eval()(torch.randn(1, 3, 64, 64)))
    assert focal_out.mean().item() == pytest.approx(0.1, abs=0.01)
    assert torch.all(mse.head.classifier.bias == 0)


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = build_model(backbone="resnet18", pretrained_path=str(path), num_keypoints=2)
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)


def test_unknown_names_and_missing_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown head 'hourglass'"):
        build_model(backbone="resnet18", head="hourglass")
    with pytest.raises(ValueError, match="unknown timm model 'resnet1800'"):
        build_model(backbone="resnet1800")
    with pytest.raises(FileNotFoundError, match="pretrained_path.*missing.pth"):
        build_model(backbone="resnet18", pretrained_path=str(tmp_path / "missing.pth"))
