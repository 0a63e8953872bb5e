"""The ament_python packaging: launch file, setup.py data files and package.xml agree, every
rosdep key resolves, and the package installs and finds its config files with colcon and pip.

The launch file is read with ``ast`` (``launch``/``launch_ros`` are not on PyPI); where
``launch_ros`` is installed it is also loaded and its description inspected. The colcon builds
run where ``colcon`` is on PATH.
"""
import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

from densemtl_ros.node.parameters import parameter_specs

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "camera.launch.py"
SETUP_PY = REPO / "setup.py"
PACKAGE_XML = REPO / "package.xml"
LAUNCH_ARGUMENTS = {"camera", "image_topic", "params_file", "backend", "namespace",
                    "use_sim_time", "dds_profile", "cameras", "lifecycle", "activate"}
ROS_BUILTIN_PARAMETERS = {"use_sim_time"}
DEPENDENCY_TAGS = ("depend", "build_depend", "build_export_depend", "buildtool_depend",
                   "buildtool_export_depend", "exec_depend", "test_depend", "doc_depend")

# What `rosdep install --from-paths src` resolves each key of package.xml to, checked against
# ros/rosdistro. A key added to package.xml is looked up there first, then added here.
ROS_PACKAGES = {
    # package -> its repository in <distro>/distribution.yaml (Humble to Rolling)
    "ament_index_python": "ament_index", "builtin_interfaces": "rcl_interfaces",
    "cv_bridge": "vision_opencv", "diagnostic_msgs": "common_interfaces", "launch": "launch",
    "launch_ros": "launch_ros", "launch_testing": "launch", "launch_testing_ros": "launch_ros",
    "lifecycle_msgs": "rcl_interfaces", "rcl_interfaces": "rcl_interfaces", "rclpy": "rclpy",
    "sensor_msgs": "common_interfaces",
    "sensor_msgs_py": "common_interfaces", "std_msgs": "common_interfaces",
}
PYTHON_KEYS = {
    # PyPI distribution -> its key in rosdep/python.yaml (a "-pip" key is installed with pip)
    "numpy": "python3-numpy", "opencv-python-headless": "python3-opencv",
    "PyYAML": "python3-yaml", "Pillow": "python3-pil", "tqdm": "python3-tqdm",
    "torch": "python3-torch", "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip", "pytest": "python3-pytest",
}
WITHOUT_ROSDEP_KEY = {"safetensors", "onnx", "onnxconverter-common"}
"""No key in rosdep/python.yaml (python3-safetensors, python3-onnxconverter-common do not
exist): installed with pip."""
DISTRIBUTION = ("setup.py", "setup.cfg", "README.md", "package.xml", "resource", "launch",
                "config", "densemtl_core", "densemtl_ros")
"""What setup.py builds the package from (copied before a build, so the tree stays as it is)."""
COLCON = shutil.which("colcon")


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_constants(tree: ast.Module) -> dict[str, object]:
    """Top-level ``NAME = <literal>`` assignments."""
    constants = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                and isinstance(statement.targets[0], ast.Name):
            try:
                constants[statement.targets[0].id] = ast.literal_eval(statement.value)
            except ValueError:
                pass
    return constants


def called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and called_name(node) == name]


def keyword(call: ast.Call, name: str) -> ast.expr:
    for item in call.keywords:
        if item.arg == name:
            return item.value
    raise AssertionError(f"{called_name(call)}() has no {name}= argument")


def value_of(node: ast.expr, constants: dict[str, object]) -> object:
    """A literal, or a module constant the expression names."""
    if isinstance(node, ast.Name):
        assert node.id in constants, f"{node.id} is not a literal module constant"
        return constants[node.id]
    return ast.literal_eval(node)


class LaunchFile:
    def __init__(self) -> None:
        self.tree = parse(LAUNCH_FILE)
        self.constants = module_constants(self.tree)
        self.functions = {node.name: node for node in self.tree.body
                          if isinstance(node, ast.FunctionDef)}
        assert "generate_launch_description" in self.functions
        self.function = self.functions["generate_launch_description"]
        nodes = calls(self.tree, "action")  # Node, or LifecycleNode with lifecycle:=true
        assert len(nodes) == 1, "the launch file starts one node"
        self.node = nodes[0]

    def declared_defaults(self) -> dict[str, ast.expr]:
        return {value_of(call.args[0], self.constants): keyword(call, "default_value")
                for call in calls(self.function, "DeclareLaunchArgument")}

    def node_argument(self, name: str) -> object:
        return value_of(keyword(self.node, name), self.constants)


@pytest.fixture(scope="module")
def launch_file() -> LaunchFile:
    return LaunchFile()


def console_scripts() -> dict[str, str]:
    """setup.py's console_scripts: name -> "module:function"."""
    (setup_call,) = calls(parse(SETUP_PY), "setup")
    entry_points = ast.literal_eval(keyword(setup_call, "entry_points"))
    scripts = {}
    for line in entry_points["console_scripts"]:
        name, target = (part.strip() for part in line.split("="))
        scripts[name] = target
    return scripts


def setup_keyword(name: str) -> object:
    tree = parse(SETUP_PY)
    (setup_call,) = calls(tree, "setup")
    return value_of(keyword(setup_call, name), module_constants(tree))


def package_xml() -> ElementTree.Element:
    return ElementTree.parse(PACKAGE_XML).getroot()


def package_name() -> str:
    return package_xml().findtext("name")


def setup_data_files() -> list[tuple[str, list[str]]]:
    """setup.py's ``data_files()``, without running ``setup()``: the module is executed with
    its top-level ``setup(...)`` call removed."""
    tree = parse(SETUP_PY)
    tree.body = [statement for statement in tree.body
                 if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
                         and called_name(statement.value) == "setup")]
    assert len(tree.body) < len(parse(SETUP_PY).body), "setup.py calls setup()"
    namespace = {"__file__": str(SETUP_PY), "__name__": "setup_without_setup"}
    exec(compile(tree, str(SETUP_PY), "exec"), namespace)
    return namespace["data_files"]()


# -- the launch file ----------------------------------------------------------------------------

def test_launch_file_declares_its_arguments(launch_file):
    declared = [value_of(call.args[0], launch_file.constants)
                for call in calls(launch_file.function, "DeclareLaunchArgument")]
    assert len(declared) == len(set(declared)), f"declared twice: {declared}"
    assert set(declared) == LAUNCH_ARGUMENTS
    for call in calls(launch_file.function, "DeclareLaunchArgument"):
        assert any(item.arg == "description" for item in call.keywords), ast.unparse(call)
        assert any(item.arg == "default_value" for item in call.keywords), ast.unparse(call)


def test_launch_configurations_are_declared(launch_file):
    named, computed = set(), []
    for call in calls(launch_file.tree, "LaunchConfiguration"):
        argument = call.args[0]
        if isinstance(argument, ast.Name) and argument.id not in launch_file.constants:
            computed.append(call)  # one of OVERRIDES, read in given_overrides()
        else:
            named.add(value_of(argument, launch_file.constants))
    assert computed and all(call in calls(launch_file.functions["given_overrides"],
                                          "LaunchConfiguration") for call in computed)
    used = named | set(launch_file.constants["OVERRIDES"])
    assert used <= LAUNCH_ARGUMENTS, f"undeclared: {used - LAUNCH_ARGUMENTS}"
    assert used == LAUNCH_ARGUMENTS, f"declared but unused: {LAUNCH_ARGUMENTS - used}"


def test_launch_file_starts_the_console_scripts(launch_file):
    """The plain node's and the managed node's executables are the console scripts of the
    node module's two entry points."""
    scripts = console_scripts()
    node_module = parse(REPO / "densemtl_ros" / "node" / "densemtl_node.py")
    functions = {node.name for node in node_module.body if isinstance(node, ast.FunctionDef)}
    for constant, entry_point in (("EXECUTABLE", "console_main"),
                                  ("LIFECYCLE_EXECUTABLE", "lifecycle_console_main")):
        executable = launch_file.constants[constant]
        assert executable in scripts, f"{executable} is not a console script of setup.py"
        module, function = scripts[executable].split(":")
        assert (module, function) == ("densemtl_ros.node.densemtl_node", entry_point)
        assert function in functions
    assert launch_file.node_argument("package") == package_name() == "densemtl_ros"
    # The node's own name, so that the params file's top-level key applies to it.
    assert launch_file.node_argument("name") == module_constants(node_module)["NODE_NAME"]


def test_console_scripts_are_installed_where_ros2_run_looks():
    """ros2 run / launch_ros look for executables in lib/<package>."""
    text = (REPO / "setup.cfg").read_text(encoding="utf-8")
    assert f"script_dir=$base/lib/{package_name()}" in text
    assert f"install_scripts=$base/lib/{package_name()}" in text


def test_launch_file_refers_to_installed_files(launch_file):
    """Every os.path.join(<share directory>, ...) in the launch file names a file of this
    repository that setup.py installs there (the parameters file and the DDS profile)."""
    shares = [call for call in calls(launch_file.tree, "get_package_share_directory")]
    assert len(shares) == 1
    assert value_of(shares[0].args[0], launch_file.constants) == package_name()
    joined = [call for call in calls(launch_file.tree, "join")
              if all(isinstance(arg, ast.Constant) for arg in call.args[1:])]
    relatives = {Path(*[arg.value for arg in call.args[1:]]) for call in joined}
    assert relatives == {Path("config", "densemtl.yaml"),
                         Path("config", "fastdds_large_images.xml")}
    installed = {(destination, source) for destination, sources in setup_data_files()
                 for source in sources}
    for relative in relatives:
        assert (REPO / relative).is_file()
        assert (f"share/{package_name()}/{relative.parent}", str(relative)) in installed
    yaml.safe_load((REPO / "config" / "densemtl.yaml").read_text(encoding="utf-8"))
    ElementTree.parse(REPO / "config" / "fastdds_large_images.xml")


def test_launch_file_remaps_the_inputs(launch_file):
    remappings = keyword(launch_file.node, "remappings")
    assert isinstance(remappings, ast.List)
    sources = [ast.literal_eval(pair.elts[0]) for pair in remappings.elts]
    assert sorted(sources) == ["camera_info", "image"]


def test_launch_arguments_override_the_params_file_only_when_given(launch_file):
    """backend and use_sim_time reached the node with their defaults ("auto", false) after
    the params file even when not given, so they always beat the user's file. Now each
    defaults to "not given", and only the given ones follow the params file."""
    overrides = launch_file.constants["OVERRIDES"]
    assert overrides == {"backend": "model.backend", "cameras": "cameras",
                         "use_sim_time": "use_sim_time"}
    assert set(overrides.values()) - ROS_BUILTIN_PARAMETERS <= set(parameter_specs())
    not_given = launch_file.constants["NOT_GIVEN"]
    defaults = launch_file.declared_defaults()
    for argument in overrides:
        assert value_of(defaults[argument], launch_file.constants) == not_given == "", argument

    # given_overrides() keeps the arguments whose value is not NOT_GIVEN.
    given = launch_file.functions["given_overrides"]
    assert calls(given, "perform"), "the arguments' values are read at launch time"
    assert any(isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.NotEq)
               and ast.unparse(node.comparators[0]) == "NOT_GIVEN" for node in ast.walk(given))

    # The node gets the params file first and then only what given_overrides() returned: the
    # later parameters file wins, and nothing is set unconditionally.
    parameters = keyword(launch_file.node, "parameters")
    assert isinstance(parameters, ast.List)
    first, *rest = parameters.elts
    assert ast.unparse(first) == "LaunchConfiguration('params_file')"
    assert len(rest) == 1 and isinstance(rest[0], ast.Starred), ast.unparse(parameters)
    assert not any(isinstance(node, ast.Dict) for node in ast.walk(parameters))
    builder = next(function for function in launch_file.functions.values()
                   if launch_file.node in calls(function, "action"))
    assert calls(builder, "given_overrides")

    # The node is built once the arguments are known: by an OpaqueFunction at launch time.
    (opaque,) = calls(launch_file.function, "OpaqueFunction")
    assert ast.unparse(keyword(opaque, "function")) == builder.name


def install_prefix(prefix: Path) -> None:
    """Copy setup.py's data files under ``prefix``, as ``colcon build`` would."""
    for destination, sources in setup_data_files():
        for source in sources:
            target = prefix / destination / Path(source).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / source, target)


def test_launch_description_loads(tmp_path, monkeypatch):
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed (not on PyPI); the launch file is parsed "
                    "instead")
    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
    from launch_ros.actions import Node

    install_prefix(tmp_path)  # the launch file finds its params file through the ament index
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    spec = importlib.util.spec_from_file_location("camera_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert Path(module.PARAMS_FILE) == tmp_path / "share" / "densemtl_ros" / "config" / \
        "densemtl.yaml"
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    arguments = [entity for entity in description.entities
                 if isinstance(entity, DeclareLaunchArgument)]
    assert {argument.name for argument in arguments} == LAUNCH_ARGUMENTS
    assert len([entity for entity in description.entities
                if isinstance(entity, OpaqueFunction)]) == 1

    def context_with(**given: str) -> LaunchContext:
        context = LaunchContext()
        context.launch_configurations.update(given)
        for argument in arguments:
            argument.visit(context)  # the defaults of the arguments not given
        return context

    assert module.given_overrides(context_with()) == {}
    given = context_with(backend="tensorrt", use_sim_time="true")
    assert set(module.given_overrides(given)) == {"model.backend", "use_sim_time"}
    assert set(module.given_overrides(context_with(use_sim_time="false"))) == {"use_sim_time"}
    (node,) = module.densemtl_node(given)
    assert isinstance(node, Node)

    def text(substitutions) -> str:
        return perform_substitutions(given, normalize_to_list_of_substitutions(substitutions))

    assert text(node.node_package) == package_name()
    assert text(node.node_executable) in console_scripts()


# -- setup.py -----------------------------------------------------------------------------------

def test_data_files_install_the_ament_layout():
    entries = setup_data_files()
    destinations = [destination for destination, _ in entries]
    assert len(destinations) == len(set(destinations))
    installed = dict(entries)
    share = f"share/{package_name()}"
    assert "launch/camera.launch.py" in installed[f"{share}/launch"]
    assert "config/densemtl.yaml" in installed[f"{share}/config"]
    assert installed[share] == ["package.xml"]
    assert installed["share/ament_index/resource_index/packages"] == [
        f"resource/{package_name()}"]
    for destination, sources in entries:
        for source in sources:
            assert (REPO / source).is_file(), source
            assert "__pycache__" not in source and not source.endswith(".pyc"), source
            # Each file keeps its folder under share/<package>.
            if destination.startswith(share + "/"):
                assert destination[len(share) + 1:] == str(Path(source).parent)


def test_resource_marker_names_the_package():
    marker = REPO / "resource" / package_name()
    assert marker.is_file()


def test_setup_and_package_xml_agree():
    root = package_xml()
    assert setup_keyword("name") == root.findtext("name")
    assert setup_keyword("version") == root.findtext("version")
    assert setup_keyword("license") == root.findtext("license")


# -- package.xml --------------------------------------------------------------------------------

def test_package_xml():
    root = package_xml()
    assert root.tag == "package"
    assert root.get("format") == "3"
    assert root.findtext("name") == "densemtl_ros"
    assert root.findall("buildtool_depend") == [], "ament_python is the build type"
    exec_depends = {element.text for element in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "cv_bridge",
            "sensor_msgs_py", "python3-numpy", "python3-opencv", "launch_ros"} <= exec_depends
    assert root.findtext("export/build_type") == "ament_python"
    for required in ("version", "description", "maintainer", "license"):
        assert (root.findtext(required) or "").strip(), required
    assert root.find("maintainer").get("email")


def dependencies() -> dict[str, list[str]]:
    """package.xml's dependency keys by tag."""
    root = package_xml()
    return {tag: [element.text.strip() for element in root.findall(tag)]
            for tag in DEPENDENCY_TAGS}


def requirement_names(requirements: list[str]) -> list[str]:
    return [re.match(r"[A-Za-z0-9._-]+", requirement).group(0) for requirement in requirements]


def test_every_rosdep_key_resolves():
    """`rosdep install --from-paths src` failed on `ament_python` (a build type, declared as a
    buildtool_depend) and `python3-safetensors` (no such key)."""
    declared = [key for keys in dependencies().values() for key in keys]
    assert "ament_python" not in declared, "ament_python is <export><build_type>, not a key"
    known = set(ROS_PACKAGES) | set(PYTHON_KEYS.values())
    unknown = sorted(set(declared) - known)
    assert not unknown, f"not a ROS package or rosdep key (see ros/rosdistro): {unknown}"
    assert len(declared) == len(set(declared)), "a key declared twice"


def test_python_requirements_have_their_rosdep_keys():
    """Each Python requirement of setup.py is declared in package.xml under its rosdep key
    (pip-only keys too), except those rosdep has no key for; no key is left without one."""
    declared = dependencies()
    runtime = requirement_names(setup_keyword("install_requires"))
    extras = setup_keyword("extras_require")
    wanted = {"exec_depend": runtime + requirement_names(extras["torch"]),
              "test_depend": requirement_names(extras["test"])}
    for tag, names in wanted.items():
        keys = {PYTHON_KEYS[name] for name in names if name not in WITHOUT_ROSDEP_KEY}
        python_keys = {key for key in declared[tag] if key.startswith("python3-")}
        assert python_keys == keys, (f"{tag}: missing {sorted(keys - python_keys)}, "
                                     f"not required by setup.py {sorted(python_keys - keys)}")
    assert set(runtime) >= WITHOUT_ROSDEP_KEY


# -- installed by colcon or pip -----------------------------------------------------------------

def copy_distribution(target: Path) -> Path:
    for name in DISTRIBUTION:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


LOCATE = ("import densemtl_ros\n"
          "from densemtl_ros.resources import config_file, dds_profile\n"
          "print(densemtl_ros.__file__)\n"
          "print(dds_profile())\n"
          "print(config_file('densemtl.yaml'))\n")
"""Run in the installed copy: where the package is, then where it finds its config files."""


def located(command: list[str], cwd: Path, **environment: str) -> list[Path]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    result = subprocess.run(command, cwd=cwd, env={**env, **environment}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [Path(line) for line in result.stdout.splitlines()]


def assert_installed_config(paths: list[Path], share: Path) -> None:
    module, profile, params = paths
    assert REPO not in module.resolve().parents, f"imported the source tree: {module}"
    assert profile.parent == params.parent == share / "config"
    assert profile.read_bytes() == (REPO / "config" / "fastdds_large_images.xml").read_bytes()
    assert params.read_bytes() == (REPO / "config" / "densemtl.yaml").read_bytes()


def test_setup_py_runs_through_a_symlink(tmp_path):
    """colcon build --symlink-install runs setup.py through a symlink in its build folder:
    setup.py looked for README.md there and failed."""
    for name in ("setup.py", "setup.cfg"):
        (tmp_path / name).symlink_to(REPO / name)
    result = subprocess.run([sys.executable, "setup.py", "--name", "--version"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [package_name(), package_xml().findtext("version")]


def test_pip_installed_package_finds_its_config(tmp_path):
    """Installed by pip, config/ is where pip put it (share/densemtl_ros of the prefix), not
    next to the source tree the code came from (replay used <package>/../config)."""
    prefix = tmp_path / "prefix"
    # --ignore-installed: pip would otherwise uninstall the environment's own (editable) copy.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--no-compile", "--ignore-installed",
                    "--prefix", str(prefix), str(copy_distribution(tmp_path / "source"))],
                   check=True, capture_output=True, timeout=300)
    shutil.rmtree(tmp_path / "source")
    (site_packages,) = prefix.glob("lib/python*/site-packages")
    paths = located([sys.executable, "-c", LOCATE], cwd=tmp_path, PYTHONPATH=str(site_packages))
    assert_installed_config(paths, prefix / "share" / package_name())


@pytest.mark.skipif(COLCON is None, reason="colcon is not installed "
                                            "(pip install colcon-common-extensions)")
@pytest.mark.parametrize("options", [[], ["--symlink-install"]], ids=["install", "symlink"])
def test_colcon_build_installs_the_package(tmp_path, options):
    """A real colcon build of the package: the ament layout, the console script where ros2
    run looks, and the config files found through the ament index."""
    workspace = tmp_path / "ws"
    copy_distribution(workspace / "src" / package_name())
    result = subprocess.run([COLCON, "build", *options], cwd=workspace, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    install = workspace / "install" / package_name()
    share = install / "share" / package_name()
    for relative in ("package.xml", "launch/camera.launch.py", "config/densemtl.yaml",
                     "config/fastdds_large_images.xml"):
        assert (share / relative).is_file(), relative
    assert (install / "share" / "ament_index" / "resource_index" / "packages" /
            package_name()).is_file()
    for executable in ("densemtl-node", "densemtl-lifecycle-node"):
        assert (install / "lib" / package_name() / executable).is_file(), executable
    paths = located(["bash", "-c", 'source install/setup.bash && exec "$0" -c "$1"',
                     sys.executable, LOCATE], cwd=workspace)
    if options:  # symlinked: the code and config/ are the workspace's source folder itself
        source = (workspace / "src" / package_name()).resolve()
        module, profile, params = (path.resolve() for path in paths)
        assert module == source / "densemtl_ros" / "__init__.py"
        assert profile == source / "config" / "fastdds_large_images.xml"
        assert params == source / "config" / "densemtl.yaml"
        assert (share / "config" / "densemtl.yaml").resolve() == params
    else:
        assert_installed_config(paths, share)

