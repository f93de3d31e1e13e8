"""Models: ResNet / ViT backbones, the multi-view token encoder and the correspondence model.

`CorrespondenceModel` (correspondence.py) is the pretraining model, `build` its sizes and the
config-to-model constructor; `attention` holds the pure
attention and RoPE functions; `convert` loads torchvision / timm checkpoints into the backbones.
"""

from jaxcorr.models.attention import dot_product_attention, linear_attention, rope_2d
from jaxcorr.models.correspondence import BACKBONES, correspondence_scores
from jaxcorr.models.correspondence import CorrespondenceModel, HEADS
from jaxcorr.models.resnet import ResNet, RESNETS
from jaxcorr.models.transformer import ATTENTIONS, Encoder
from jaxcorr.models.vit import ViT, VITS
