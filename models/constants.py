"""Facts shared by every stage: image geometry, feature names and patch geometry.

Anything that more than one module needs to agree on lives here and nowhere else.
"""

# DRIVE fundus images are 565 pixels wide and 584 high (all 40 of them): the demo data's size.
IMAGE_HEIGHT = 584
IMAGE_WIDTH = 565
# The sides the curated schema accepts (HRF, the largest public set, is 3504x2336).
MIN_IMAGE_SIDE = 128
MAX_IMAGE_SIDE = 8192
# More pixels than this are refused, at ingestion before decoding (a decompression bomb costs its
# full size in memory) and by the exported model. HRF's 3504x2336 is 8.2 M.
MAX_IMAGE_PIXELS = 40_000_000
# What `retina-tfx predict --format` writes, the default first: a 16-bit PNG (probability to
# 1/65535: the AUC of the float output), an 8-bit PNG (small), float32 .npy (exact).
MAP_FORMATS = ('png16', 'png8', 'npy')

# Raw tf.Example features written by FundusExampleGen.
DATASET_KEY = 'dataset'          # the dataset an image comes from, e.g. b'DRIVE' (a slice key)
IMAGE_ID_KEY = 'image_id'        # the dataset's own: b'21' (DRIVE), b'im0001' (STARE), b'01L' ...
IMAGE_KEY = 'image'              # lossless PNG of the RGB fundus image
LABEL_KEY = 'label'              # PNG, 0/255: first observer's vessel annotation
LABEL2_KEY = 'label2'            # PNG, 0/255: second observer's, where published
FOV_KEY = 'fov'                  # PNG, 0/255: field-of-view mask (computed if none published)
HEIGHT_KEY = 'height'
WIDTH_KEY = 'width'
SOURCE_FILE_KEY = 'source_file'  # dataset-relative path, e.g. b'training/images/21_training.tif'

# Output splits of FundusExampleGen: each dataset's test images; eval held out of its training ones.
TRAIN_SPLIT = 'train'
EVAL_SPLIT = 'eval'
TEST_SPLIT = 'test'
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, TEST_SPLIT)
DEFAULT_EVAL_COUNT = 4           # training images held out for validation

# Training patches (the recipe's 48x48).
PATCH_SIZE = 48
