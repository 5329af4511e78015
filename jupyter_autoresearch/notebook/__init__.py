"""The notebook adapters: the magics, the ipywidgets panel, the bridge to the JupyterLab extension, exports."""
