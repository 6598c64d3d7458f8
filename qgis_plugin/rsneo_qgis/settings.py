"""The provider's one setting: how to start rsneo (Settings > Options > Processing > Providers > rsneo)."""

from qgis.core import QgsSettings

KEY = "rsneo/command"
DESCRIPTION = (
    "rsneo command: an `rsneo` executable, the python of an environment with rsneo installed "
    "(.venv/bin/python), or a whole command line"
)


def command_setting() -> str:
    """The setting's value (empty: `rsneo` on the PATH); RSNEO_QGIS_COMMAND overrides it (runner.py)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting("RSNEO_COMMAND")
        if value:
            return str(value)
    except ImportError:  # qgis_process without the Processing plugin's Python part
        pass
    return str(QgsSettings().value(KEY, "") or "")
