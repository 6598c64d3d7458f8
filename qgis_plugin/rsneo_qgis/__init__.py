"""rsneo's QGIS plugin: a Processing provider that runs the rsneo command line."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import RsneoPlugin

    return RsneoPlugin(iface)
