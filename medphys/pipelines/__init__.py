"""Pipelines: the dataset job (`generate`)."""

from ._config import GenerateConfig as GenerateConfig
from ._config import default_config_text as default_config_text
from ._config import load_config as load_config
from ._generate import OutputError as OutputError
from ._generate import generate as generate
from ._generate import versions as versions
