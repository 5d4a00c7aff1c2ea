"""retina-tfx: a TFX pipeline for retinal vessel segmentation on DRIVE."""
import setuptools

setuptools.setup(
    name='retina-tfx',
    version='0.1.0',
    description='TFX pipeline for retinal blood-vessel segmentation (DRIVE)',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['pipeline*', 'components*', 'models*', 'schemas*',
                                               'cli*', 'synthetic_drive*']),
    package_data={'schemas': ['*.pbtxt'],
                  # The shipped model: a TF Serving folder (SavedModel files in <version>/).
                  'models': ['shipped_model/*.md', 'shipped_model/*/*.pb',
                             'shipped_model/*/variables/*', 'shipped_model/*/assets.extra/*']},
    # Versions are pinned by constraints.txt; tfx itself is installed there with --no-deps because it
    # declares Requires-Python <3.11 while working on 3.11.
    install_requires=[
        'tensorflow', 'tf_keras', 'tensorflow-transform', 'tensorflow-model-analysis',
        'tensorflow-data-validation', 'apache-beam', 'numpy', 'opencv-python-headless', 'pillow',
        'matplotlib', 'scikit-learn',
    ],
    entry_points={'console_scripts': ['retina-tfx = cli.main:main']},
)
