"""The user's own config folders (--config-dir, OPTEXP_CONFIG_DIR) and optexp-init."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra._internal.config_search_path_impl import ConfigSearchPathImpl

from optexp.starter import main, write_starter
from optexp.user_configs import BUILT_IN, add_user_dirs

LION = """\
# SGD with heavy momentum, under a name of the user's
_target_: torch.optim.SGD
lr: 0.05
momentum: 0.9
weight_decay: 0.0
decay_bias_and_norm: false
"""
ADAM = "_target_: torch.optim.Adam\nlr: 0.0123\n"  # same name as a built-in option


@pytest.fixture
def my_configs(tmp_path: Path) -> Path:
    folder = tmp_path / "my_configs"
    (folder / "optimizer").mkdir(parents=True)
    (folder / "optimizer" / "lion.yaml").write_text(LION)
    (folder / "optimizer" / "adam.yaml").write_text(ADAM)
    return folder


@pytest.mark.parametrize("flag", ["--config-dir", "-cd"])
def test_help_lists_the_users_options_beside_the_built_in_ones(optexp_cli, my_configs, flag):
    result = optexp_cli(flag, str(my_configs), "--help")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("optimizer: "))
    assert "lion" in line and "sgd" in line and "textbook/adam" in line
    assert "OPTEXP_CONFIG_DIR" in result.stdout  # how to set it once


def test_a_users_file_replaces_the_built_in_one_of_its_name(optexp_cli, my_configs):
    result = optexp_cli("--cfg", "job", "--config-dir", str(my_configs))
    assert result.returncode == 0, result.stderr
    assert "lr: 0.0123" in result.stdout and "betas" not in result.stdout


def test_the_environment_variable_names_the_folder_once(optexp_cli, my_configs):
    env = {"OPTEXP_CONFIG_DIR": str(my_configs)}
    result = optexp_cli("--cfg", "job", "optimizer=lion", env=env)
    assert result.returncode == 0, result.stderr
    assert "momentum: 0.9" in result.stdout


def test_the_command_line_folder_comes_before_the_environments(optexp_cli, my_configs, tmp_path):
    other = tmp_path / "other" / "optimizer"
    other.mkdir(parents=True)
    (other / "adam.yaml").write_text("_target_: torch.optim.Adam\nlr: 0.5\n")
    env = {"OPTEXP_CONFIG_DIR": str(other.parent)}
    result = optexp_cli("--cfg", "job", "-cd", str(my_configs), env=env)
    assert result.returncode == 0, result.stderr
    assert "lr: 0.0123" in result.stdout


def test_misspelt_option_lists_the_users_options_in_one_line(optexp_cli, my_configs):
    result = optexp_cli("--config-dir", str(my_configs), "optimizer=lionn")
    assert result.returncode == 2
    errors = [x for x in result.stderr.splitlines() if x.startswith("optexp: error:")]
    assert len(errors) == 1 and "optimizer/lionn" in errors[0]
    assert "Allowed: " in errors[0] and "lion," in errors[0] and "sgd" in errors[0]


def test_a_missing_folder_is_one_error_line(optexp_cli, tmp_path):
    result = optexp_cli("--cfg", "job", env={"OPTEXP_CONFIG_DIR": str(tmp_path / "nope")})
    assert result.returncode == 2
    assert result.stderr.startswith("optexp: error: config directory") and "nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_other_hydra_apps_keep_their_search_path(monkeypatch, my_configs):
    monkeypatch.setenv("OPTEXP_CONFIG_DIR", str(my_configs))
    theirs = ConfigSearchPathImpl()
    theirs.append("main", "pkg://their_app.conf")
    add_user_dirs(theirs)
    assert [e.path for e in theirs.get_path()] == ["pkg://their_app.conf"]
    ours = ConfigSearchPathImpl()
    ours.append("main", BUILT_IN)
    add_user_dirs(ours)
    assert [e.path for e in ours.get_path()] == [f"optexp-user://{my_configs}", BUILT_IN]


def test_starter_folder_composes_and_is_never_overwritten(optexp_cli, tmp_path, capsys):
    folder = tmp_path / "starter"
    written = write_starter(folder)
    assert folder / "optimizer" / "my_adam.yaml" in written
    assert (folder / "README.md").exists() and (folder / "experiment" / "mine.yaml").exists()
    result = optexp_cli("--cfg", "job", "-cd", str(folder), "experiment=mine")
    assert result.returncode == 0, result.stderr
    assert "_target_: torch.optim.Adam" in result.stdout and "epochs: 10" in result.stdout
    with pytest.raises(SystemExit) as exit_:
        main([str(folder)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith(f"optexp-init: error: {folder}/")


def test_version_is_optexps(optexp_cli):
    import optexp

    result = optexp_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"optexp {optexp.__version__} (Hydra ")


def init(folder: Path, capsys) -> tuple[int, str]:
    """`optexp-init FOLDER`: its exit code and stderr."""
    with pytest.raises(SystemExit) as exit_:
        main([str(folder)])
    return exit_.value.code, capsys.readouterr().err


def test_init_with_a_file_in_the_way_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTEXP_DEBUG", raising=False)
    folder = tmp_path / "mc"
    folder.mkdir()
    (folder / "optimizer").write_text("")  # where the folder optimizer/ is to go
    code, err = init(folder, capsys)
    assert code == 2
    assert err.splitlines() == [
        f"optexp-init: error: {folder / 'optimizer'} is a file; a folder is needed "
        "(nothing written)",
        "(set OPTEXP_DEBUG=1 for the traceback)",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["optimizer"]


def test_init_on_a_file_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTEXP_DEBUG", raising=False)
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    code, err = init(afile, capsys)
    assert code == 2
    assert err.splitlines()[0] == (
        f"optexp-init: error: {afile} is a file; a folder is needed (nothing written)"
    )
    assert afile.read_text() == "mine\n"


def test_init_that_fails_half_way_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTEXP_DEBUG", raising=False)
    folder = tmp_path / "mc"
    real_write = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if self.parent.name == "optimizer":
            raise OSError(28, "No space left on device", str(self))
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    code, err = init(folder, capsys)
    assert code == 2
    assert err.startswith("optexp-init: error: cannot write ") and "No space left" in err
    assert "(nothing written)" in err.splitlines()[0]
    assert not folder.exists()


def one_error(result) -> str:
    """The single `optexp: error:` line of a refusal (exit 2, the hint line, no traceback)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[1] == "(set OPTEXP_DEBUG=1 for the traceback)", lines
    assert lines[0].startswith("optexp: error: ")
    return lines[0]


def test_a_config_dir_that_is_a_file_is_named_as_a_file(optexp_cli, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    error = one_error(optexp_cli("--cfg", "job", "--config-dir", str(afile)))
    assert f"--config-dir '{afile}' is a file" in error and "not found" not in error
    error = one_error(optexp_cli("--cfg", "job", env={"OPTEXP_CONFIG_DIR": str(afile)}))
    assert f"OPTEXP_CONFIG_DIR names '{afile}', a file" in error


def test_a_config_yaml_in_a_config_dir_is_refused_before_any_run_dir(optexp_cli, tmp_path):
    folder = tmp_path / "uc"
    folder.mkdir()
    (folder / "config.yaml").write_text("seed: 5\n")
    error = one_error(optexp_cli("-cd", str(folder), "trainer.epochs=1"))
    assert f"{folder / 'config.yaml'}" in error and "must not hold config.yaml" in error
    assert "group folders (optimizer/, experiment/, ...)" in error
    assert not (tmp_path / "run").exists()


def test_a_yaml_file_outside_a_group_folder_is_named(optexp_cli, tmp_path):
    folder = tmp_path / "uc"
    folder.mkdir()
    (folder / "sgd.yaml").write_text("_target_: torch.optim.SGD\nlr: 0.1\n")
    (folder / "README.md").write_text("notes\n")  # not a config: fine
    error = one_error(optexp_cli("--cfg", "job", "-cd", str(folder)))
    assert f"{folder / 'sgd.yaml'} is outside any group folder" in error
    assert "optimizer/sgd.yaml" in error  # where it should go, if it is an optimizer


def test_a_misnamed_group_folder_is_named_with_the_groups_there_are(optexp_cli, tmp_path):
    folder = tmp_path / "uc"
    (folder / "optimizers").mkdir(parents=True)
    (folder / "optimizers" / "mine.yaml").write_text("_target_: torch.optim.SGD\nlr: 0.1\n")
    (folder / "notes").mkdir()  # no YAML in it: not meant as a group
    error = one_error(optexp_cli("--cfg", "job", env={"OPTEXP_CONFIG_DIR": str(folder)}))
    assert f"{folder / 'optimizers'}/ is not a config group" in error
    assert "Did you mean optimizer/?" in error and "Allowed: " in error and "dataset" in error


def test_every_config_dir_flag_counts_the_first_winning(optexp_cli, my_configs, tmp_path):
    other = tmp_path / "other" / "optimizer"
    other.mkdir(parents=True)
    (other / "adam.yaml").write_text("_target_: torch.optim.Adam\nlr: 0.5\n")
    (other / "mine.yaml").write_text("_target_: torch.optim.SGD\nlr: 0.25\n")
    args = ("--cfg", "job", "-cd", str(my_configs), "--config-dir", str(other.parent))
    result = optexp_cli(*args, "optimizer=mine")  # only in the second folder
    assert result.returncode == 0, result.stderr
    assert "lr: 0.25" in result.stdout
    result = optexp_cli(*args)  # adam.yaml in both: the first folder's
    assert result.returncode == 0, result.stderr
    assert "lr: 0.0123" in result.stdout


def test_an_empty_config_dir_is_refused(optexp_cli):
    error = one_error(optexp_cli("--cfg", "job", "--config-dir", ""))
    assert "--config-dir ''" in error and "Allowed: " in error


def test_an_empty_environment_variable_is_as_unset(optexp_cli):
    for value in ("", os.pathsep):
        result = optexp_cli("--cfg", "job", env={"OPTEXP_CONFIG_DIR": value})
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "content", [b"# caf\xe9\n_target_: torch.optim.SGD\nlr: 0.1\n", b"\x89PNG\r\n\x1a\n\x00\xff"]
)
def test_a_file_that_is_not_utf8_is_named(optexp_cli, tmp_path, content):
    (tmp_path / "uc" / "optimizer").mkdir(parents=True)
    path = tmp_path / "uc" / "optimizer" / "latin.yaml"
    path.write_bytes(content)
    error = one_error(optexp_cli("-cd", str(tmp_path / "uc"), "optimizer=latin", "seed=1"))
    assert f"{path} is not UTF-8 text" in error and "save it as UTF-8" in error


@pytest.mark.parametrize(
    "text", ["defaults:\n  - override /optimizer: sgd\n", "", "# a preset\ntrainer:\n  epochs: 1\n"]
)
def test_a_preset_without_its_package_line_says_it_needs_one(optexp_cli, tmp_path, text):
    (tmp_path / "uc" / "experiment").mkdir(parents=True)
    path = tmp_path / "uc" / "experiment" / "nopkg.yaml"
    path.write_text(text)
    error = one_error(optexp_cli("-cd", str(tmp_path / "uc"), "experiment=nopkg", "seed=1"))
    assert f"{path} needs `# @package _global_` as its first line" in error


def test_a_preset_saved_with_a_byte_order_mark_keeps_its_package_line(optexp_cli, tmp_path):
    (tmp_path / "uc" / "experiment").mkdir(parents=True)
    preset = "# @package _global_\ntrainer:\n  epochs: 7\n"
    (tmp_path / "uc" / "experiment" / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + preset.encode())
    result = optexp_cli("--cfg", "job", "-cd", str(tmp_path / "uc"), "experiment=bom")
    assert result.returncode == 0, result.stderr
    assert "epochs: 7" in result.stdout


def test_init_with_an_empty_name_is_refused_not_the_cwd(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTEXP_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([""])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0]
        == "optexp-init: error: DIR '' is not allowed. Allowed: a folder's path; . for this one"
    )
    assert list(tmp_path.iterdir()) == []
