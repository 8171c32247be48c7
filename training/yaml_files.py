"""Reading config files: strict YAML (no aliases, bounded nesting, no key given twice) and one
top-level mapping per file, each problem a one-line ConfigError naming the file."""
import yaml

from fileio import open_regular
from training.schema import ConfigError

# A config is a few hundred bytes; the caps keep a hostile file from costing time or memory.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_DEPTH = 16


class _StrictYamlLoader(yaml.SafeLoader):
    """Safe YAML without aliases (``*name``: a 0.5 KB file of nested aliases expands to gigabytes),
    without deep nesting (the composer recurses once per level) and without a key given twice in one
    mapping (PyYAML would keep the last silently: ``lr: 0.05`` then ``lr: 0.5`` trains at 0.5)."""

    depth = 0

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)   # cached per node: super() reuses it
                if not isinstance(key, (str, int, float)):   # super() refuses an unhashable key itself
                    continue
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {str(key)[:40]!r} given twice",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor[:40]}) are not allowed",
                                              event.start_mark)
        if self.depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                              event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_yaml(text):
    """The value of one YAML document; a ValueError with one short line if it is not acceptable."""
    try:
        return yaml.load(text, Loader=_StrictYamlLoader)
    except yaml.MarkedYAMLError as error:
        where = f" at line {error.problem_mark.line + 1}" if error.problem_mark else ""
        raise ValueError(f"not valid YAML ({str(error.problem)[:100]}{where})") from None
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer of more than 4300 digits
        raise ValueError(f"not valid YAML ({str(error).splitlines()[0][:100]})") from None


def read_yaml_mapping(path):
    """The top-level mapping of one config file; anything else is a one-line ConfigError naming the file."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    try:
        with open_regular(path) as handle:   # a FIFO would block the reader forever
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, not a config file")
    try:
        raw = parse_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got a {type(raw).__name__}")
    return raw
