"""Facts shared by every stage: DRIVE's geometry, feature names and patch geometry.

Anything that more than one module needs to agree on lives here and nowhere else.
"""

# DRIVE fundus images are 565 pixels wide and 584 high (all 40 of them).
IMAGE_HEIGHT = 584
IMAGE_WIDTH = 565

# Raw tf.Example features written by DriveExampleGen.
IMAGE_ID_KEY = 'image_id'        # DRIVE's number, e.g. b'21'
IMAGE_KEY = 'image'              # lossless PNG of the RGB fundus image
LABEL_KEY = 'label'              # PNG, 0/255: 1st_manual vessel annotation
LABEL2_KEY = 'label2'            # PNG, 0/255: 2nd_manual annotation (test images only)
FOV_KEY = 'fov'                  # PNG, 0/255: field-of-view mask
HEIGHT_KEY = 'height'
WIDTH_KEY = 'width'
SOURCE_FILE_KEY = 'source_file'  # DRIVE-relative path of the image, e.g. b'training/images/21_training.tif'

# Output splits of DriveExampleGen: train/eval come from DRIVE's training/ folder, test from test/.
TRAIN_SPLIT = 'train'
EVAL_SPLIT = 'eval'
TEST_SPLIT = 'test'
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, TEST_SPLIT)
DEFAULT_EVAL_COUNT = 4           # training images held out for validation

# Training patches (the recipe's 48x48).
PATCH_SIZE = 48
