# Built by `sam build` for the GrovesLayer (Metadata: BuildMethod: makefile, ContentUri: .).
# Installs manylinux wheels for the Lambda runtime whatever the build host, then trims what
# Lambda never imports, so the layer stays under Lambda's 250 MB unzipped limit (~205 MB).
LAMBDA_PYTHON ?= 3.12
LAMBDA_PLATFORM ?= manylinux_2_28_x86_64
LAYER_DIR = $(ARTIFACTS_DIR)/python
PIP_TARGET = pip install --quiet --target "$(LAYER_DIR)" --platform $(LAMBDA_PLATFORM) \
	--python-version $(LAMBDA_PYTHON) --implementation cp --only-binary=:all:

build-GrovesLayer:
	$(PIP_TARGET) --requirement lambda-requirements.txt
	$(PIP_TARGET) --no-deps .
	find "$(LAYER_DIR)" -depth -type d -name tests -exec rm -rf {} +
	find "$(LAYER_DIR)" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' \
		-o -name '*.c' -o -name '*.cpp' -o -name '*.h' \) -delete
	rm -rf "$(LAYER_DIR)/bin"
	du -sh "$(LAYER_DIR)"
