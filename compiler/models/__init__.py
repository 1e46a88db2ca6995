"""Models in the repo for tests and benchmarks (plain torch; torchvision does not work
beside the CPU build): a small CNN for scikit-learn's digits, ResNet-18, MobileNetV2 and a
BERT-style encoder block. Importing this package imports torch."""

from gemmstone.compiler.models.digits import DigitsCNN, load_digits_split, train_digits_cnn
from gemmstone.compiler.models.encoder import EncoderBlock
from gemmstone.compiler.models.init import randomize_batch_norm
from gemmstone.compiler.models.mobilenet import MobileNetV2, mobilenet_v2
from gemmstone.compiler.models.resnet import ResNet, resnet18

__all__ = ["DigitsCNN", "load_digits_split", "train_digits_cnn", "EncoderBlock",
           "randomize_batch_norm", "MobileNetV2", "mobilenet_v2", "ResNet", "resnet18"]
